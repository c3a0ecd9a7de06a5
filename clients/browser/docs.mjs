// Opens Kenes's /docs and /redoc in headless Chromium (Debian's, driven by playwright-core) and
// prints what it saw as one JSON line: operations rendered, the status of a GET made through
// Swagger UI after Authorize, and every request that tried to leave the server (none expected).
// Usage: node clients/browser/docs.mjs <base url> <e-mail> <password>
import { chromium } from "playwright-core";

const [base, email, password] = process.argv.slice(2);
const origin = new URL(base).origin;
const TIMEOUT = 30_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // As on this machine's probe: without the background-networking flags Chromium keeps trying
  // Google's hosts, which a closed network refuses.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const result = { external_requests: [], console_errors: [] };
try {
  const context = await browser.newContext();
  // Anything not served by Kenes itself (a CDN, web fonts) is recorded and refused.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith("data:") || url.startsWith("blob:")) {
      return route.continue();
    }
    result.external_requests.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") result.console_errors.push(message.text());
  });

  // Swagger UI: every operation rendered.
  await page.goto(`${base}/docs`);
  await page.locator(".opblock").first().waitFor({ timeout: TIMEOUT });
  result.swagger_title = await page.locator(".information-container .title").innerText();
  result.swagger_operations = await page.locator(".opblock").count();

  // Authorize with the password flow, as a person would.
  await page.locator(".auth-wrapper .btn.authorize").click();
  const dialog = page.locator(".modal-ux");
  await dialog.locator("#oauth_username").fill(email);
  await dialog.locator("#oauth_password").fill(password);
  await dialog.locator(".auth-btn-wrapper .btn.modal-btn.auth.authorize").click();
  await dialog.locator(".auth-btn-wrapper button", { hasText: "Logout" }).waitFor({
    timeout: TIMEOUT,
  });
  await dialog.locator(".btn-done, .close-modal").first().click();

  // Try it out: GET /api/v1/auth/me with the token Swagger UI now holds.
  const operation = page.locator('.opblock-get:has([data-path="/api/v1/auth/me"])');
  await operation.locator(".opblock-summary").click();
  await operation.locator(".try-out__btn").click();
  const answer = page.waitForResponse((r) => r.url() === `${base}/api/v1/auth/me`);
  await operation.locator(".execute").click();
  const response = await answer;
  result.authorized_get = {
    status: response.status(),
    sent_authorization: (response.request().headers().authorization ?? "").startsWith("Bearer "),
  };
  const shown = operation.locator(".live-responses-table tbody .response-col_status").first();
  await shown.waitFor({ timeout: TIMEOUT });
  result.authorized_get.shown_status = (await shown.innerText()).trim();
  result.authorized_get.shown_body_has_email = (
    await operation.locator(".live-responses-table .microlight").first().innerText()
  ).includes(email);

  // ReDoc: the same operations.
  await page.goto(`${base}/redoc`);
  const redocOperations = page.locator('[data-section-id^="operation/"]');
  await redocOperations.first().waitFor({ timeout: TIMEOUT });
  result.redoc_operations = await redocOperations.count();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
