// A small typed Kenes client: the types come from /openapi.json (openapi-typescript), the calls
// go through openapi-fetch, so a change of path, field or status in the API breaks this file
// under `tsc --strict` (.ci/run). It logs in, lists questionnaires, submits a response and
// reads an aggregate.
import createClient from "openapi-fetch";

import type { components, paths } from "../generated/kenes";

// JSON answers and problem+json errors; the CSV variants of the same paths are not used here.
type JsonMedia = `application/${string}json`;
type Schemas = components["schemas"];
export type Questionnaire = Schemas["QuestionnaireRead"];
export type StoredResponse = Schemas["ResponseRead"];
export type Aggregates = Schemas["SurveyAggregates"];
export type Problem = Schemas["Problem"];

export class KenesError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
  ) {
    super(problem ? `${problem.title}: ${problem.detail}` : `HTTP ${status}`);
  }
}

function fail(response: Response, problem: Problem | undefined): never {
  // Problem.errors is optional: present only for validation failures.
  for (const error of problem?.errors ?? []) {
    console.error(error.loc.join("."), error.msg);
  }
  throw new KenesError(response.status, problem);
}

export async function login(baseUrl: string, email: string, password: string) {
  const anonymous = createClient<paths, JsonMedia>({ baseUrl });
  const { data, error, response } = await anonymous.POST("/api/v1/auth/token", {
    body: { username: email, password },
    bodySerializer: (body) => new URLSearchParams(body as Record<string, string>),
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
  });
  if (data === undefined) fail(response, error);
  const client = createClient<paths, JsonMedia>({
    baseUrl,
    headers: { Authorization: `Bearer ${data.access_token}` },
  });
  return { client, expiresIn: data.expires_in };
}

type Client = Awaited<ReturnType<typeof login>>["client"];

export async function publishedQuestionnaires(client: Client): Promise<Questionnaire[]> {
  const found: Questionnaire[] = [];
  let cursor: string | null = null;
  do {
    const query: { status: "published"; limit: number; cursor?: string } = {
      status: "published",
      limit: 100,
    };
    if (cursor !== null) query.cursor = cursor;
    const { data, error, response } = await client.GET("/api/v1/questionnaires", {
      params: { query },
    });
    if (data === undefined) fail(response, error);
    found.push(...data.items);
    cursor = data.next_cursor ?? null;
  } while (cursor !== null);
  return found;
}

export async function submit(
  client: Client,
  questionnaire: Questionnaire,
  answers: Record<string, unknown>,
): Promise<{ stored: StoredResponse; replay: boolean; location: string | null }> {
  const group = questionnaire.respondent_groups[0];
  if (group === undefined) throw new Error("a questionnaire has at least one group");
  const { data, error, response } = await client.POST(
    "/api/v1/questionnaires/{questionnaire_id}/responses",
    {
      params: { path: { questionnaire_id: questionnaire.id } },
      body: {
        id: crypto.randomUUID(),
        respondent: { group: group.key, gender: "undisclosed" },
        answers,
        channel: "web",
      },
    },
  );
  if (data === undefined) fail(response, error);
  // 201 with Location when stored, 200 when the same id and content were stored before.
  return { stored: data, replay: response.status === 200, location: response.headers.get("Location") };
}

export async function aggregates(
  client: Client,
  questionnaireId: string,
  by: string,
): Promise<Aggregates> {
  const { data, error, response } = await client.GET(
    "/api/v1/questionnaires/{questionnaire_id}/aggregates",
    { params: { path: { questionnaire_id: questionnaireId }, query: { by } } },
  );
  if (data === undefined) fail(response, error);
  return data;
}

export function describe(figures: Aggregates): string[] {
  return figures.questions.map((question) => {
    const cells = question.cells.filter((cell) => !cell.suppressed);
    return `${question.key}: ${cells.length} cells shown of ${question.cells.length}`;
  });
}
