// ODK's XForms engine (@getodk/xforms-engine, the engine of ODK Web Forms) as an OpenRosa client
// of Kenes: read the form list at a collector's server URL, download the form, fill it, and
// POST the payload the engine produces to the submission URL, twice (the second is a resend).
// Form media are fetched from the URLs the form's manifest gives (fetchFormAttachment).
//
// Usage: node openrosa/engine.mjs <server URL> <formID> '<answers JSON>' [language]
// Answers: {"<node name>": value | [values] | [{...}, ...] (repeat instances)}, filled in the
// form's order, so a relevant question appears once the answers before it make it relevant.
// Prints one JSON line: what the server answered and what the engine sent.
import { JSDOM } from 'jsdom';

const [serverUrl, formId, answersJson, language] = process.argv.slice(2);
const answers = JSON.parse(answersJson);

// The engine needs a DOM (DOMParser, document) and, for its bundled tree-sitter WASM, the
// CommonJS globals (see ../shared/notes/real-clients.md).
const { window } = new JSDOM('');
globalThis.document = window.document;
for (const name of ['DOMParser', 'XMLSerializer', 'Node', 'Element', 'Document', 'XMLDocument',
  'Attr', 'Text', 'CharacterData', 'DocumentFragment', 'NodeFilter', 'XPathResult']) {
  if (window[name] && !(name in globalThis)) globalThis[name] = window[name];
}
globalThis.__dirname = process.cwd();
globalThis.module = { exports: {} };
const { loadForm } = await import('@getodk/xforms-engine');

const OPENROSA = { 'X-OpenRosa-Version': '1.0' };

async function text(url) {
  const response = await fetch(url, { headers: OPENROSA });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return { body: await response.text(), headers: response.headers };
}

const list = await text(`${serverUrl}/formList`);
const listDoc = new window.DOMParser().parseFromString(list.body, 'text/xml');
const entry = [...listDoc.getElementsByTagName('xform')].find(
  (node) => node.getElementsByTagName('formID')[0].textContent === formId,
);
if (!entry) throw new Error(`form ${formId} not in the form list`);
const field = (name) => entry.getElementsByTagName(name)[0].textContent;
const form = await text(field('downloadUrl'));

// Form media (an external CSV list such as territories.csv): the XForm names it
// `jr://file-csv/<name>`; the manifest gives its download URL, as Collect reads it.
const manifest = await text(field('manifestUrl'));
const manifestDoc = new window.DOMParser().parseFromString(manifest.body, 'text/xml');
const media = new Map(
  [...manifestDoc.getElementsByTagName('mediaFile')].map((node) => [
    node.getElementsByTagName('filename')[0].textContent,
    node.getElementsByTagName('downloadUrl')[0].textContent,
  ]),
);
const attachments = [];
async function fetchFormAttachment(resource) {
  const name = String(resource).split('/').pop();
  if (!media.has(name)) throw new Error(`${resource}: not in the manifest`);
  const response = await fetch(media.get(name), { headers: OPENROSA });
  attachments.push({ name, status: response.status });
  return response;
}

const loaded = await loadForm(form.body, { fetchFormAttachment });
if (loaded.status === 'failure') throw loaded.error;
const { root } = loaded.createInstance();
if (language) {
  const wanted = root.languages.find((item) => item.language.includes(`(${language})`));
  if (wanted) root.setLanguage(wanted);
}

const nameOf = (node) => node.definition.nodeset.split('/').pop();

function fill(node, values) {
  for (const child of node.currentState.children) {
    const name = nameOf(child);
    if (child.nodeType === 'group' || child.nodeType === 'subtree') {
      fill(child, values);
      continue;
    }
    if (!(name in values)) continue;
    const value = values[name];
    if (child.nodeType.startsWith('repeat-range')) {
      if (child.nodeType === 'repeat-range:uncontrolled') {
        const missing = value.length - child.currentState.children.length;
        if (missing > 0) child.addInstances(child.currentState.children.length - 1, missing);
      }
      // A controlled repeat (jr:count) has its instances made from its count question.
      child.currentState.children.forEach((instance, index) => fill(instance, value[index] ?? {}));
    } else if (child.nodeType === 'select') {
      child.selectValues(Array.isArray(value) ? value : [value]);
    } else {
      child.setValue(typeof value === 'string' ? value : value);
    }
  }
}
fill(root, answers);

const payload = await root.prepareInstancePayload();
const data = payload.data[0];
const instanceFile = data.get('xml_submission_file');
const instanceXml = await instanceFile.text();
const sent = [];
for (let attempt = 0; attempt < 2; attempt += 1) {
  const response = await fetch(`${serverUrl}/submission`, {
    method: 'POST',
    headers: OPENROSA,
    body: data,
  });
  sent.push({ status: response.status, body: await response.text() });
}
console.log(
  JSON.stringify({
    hash: field('hash'),
    form_md5_matches: null,
    payload_status: payload.status,
    violations: (payload.violations ?? []).map((item) => String(item.reference ?? item)),
    instance: instanceXml,
    submissions: sent,
    openrosa_version: form.headers.get('x-openrosa-version'),
    attachments,
  }),
);
