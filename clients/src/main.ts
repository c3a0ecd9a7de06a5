// Runs the typed client against a server: node dist/main.js <base url> <e-mail> <password>
// <questionnaire slug> <answers as JSON>. Prints one JSON line of what it saw.
import { aggregates, describe, login, publishedQuestionnaires, submit } from "./kenes-client.js";

declare const process: { argv: string[]; exitCode?: number };

const [base, email, password, slug, answers] = process.argv.slice(2);
if (!base || !email || !password || !slug || !answers) {
  throw new Error("usage: main.js <base url> <e-mail> <password> <slug> <answers JSON>");
}
const { client, expiresIn } = await login(base, email, password);
const questionnaires = await publishedQuestionnaires(client);
const survey = questionnaires.find((q) => q.slug === slug);
if (survey === undefined) throw new Error(`no published questionnaire ${slug}`);
const first = await submit(client, survey, JSON.parse(answers) as Record<string, unknown>);
const figures = await aggregates(client, survey.id, "gender");
console.log(
  JSON.stringify({
    expires_in: expiresIn,
    published: questionnaires.length,
    replay: first.replay,
    location: first.location,
    stored_answers: first.stored.answers,
    n_responses: figures.n_responses,
    questions: describe(figures),
  }),
);
