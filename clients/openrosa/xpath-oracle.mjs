// ODK's XForms engine (@getodk/xforms-engine) as an independent evaluator of XLSForm
// expressions, for tests/test_expression_oracle.py: the test writes an XForm whose calculate
// binds hold the expressions, and answer sets for its input questions; this script loads the
// form once, makes one instance per answer set, and prints what the engine computed.
//
// Usage: node openrosa/xpath-oracle.mjs < {"form": "<XForm>", "cases": [{"<name>": "<value>"}]}
// Prints one JSON line: [{"<calculate name>": "<value>", ...}, ...], one object per case.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const { form, cases } = JSON.parse(readFileSync(0, 'utf8'));

// The engine needs a DOM and, for its bundled tree-sitter WASM, the CommonJS globals
// (../shared/notes/real-clients.md).
const { window } = new JSDOM('');
globalThis.document = window.document;
for (const name of ['DOMParser', 'XMLSerializer', 'Node', 'Element', 'Document', 'XMLDocument',
  'Attr', 'Text', 'CharacterData', 'DocumentFragment', 'NodeFilter', 'XPathResult']) {
  if (window[name] && !(name in globalThis)) globalThis[name] = window[name];
}
globalThis.__dirname = process.cwd();
globalThis.module = { exports: {} };
const { loadForm } = await import('@getodk/xforms-engine');

const loaded = await loadForm(form);
if (loaded.status === 'failure') throw loaded.error;

const nameOf = (node) => node.definition.nodeset.split('/').pop();

function fill(node, values) {
  for (const child of node.currentState.children ?? []) {
    const name = nameOf(child);
    if (name in values && typeof child.setValue === 'function') child.setValue(values[name]);
  }
}

const results = [];
for (const values of cases) {
  const { root } = loaded.createInstance();
  fill(root, values);
  // The instance as the engine would submit it: every calculate's value, as text.
  const payload = await root.prepareInstancePayload();
  const xml = await payload.data[0].get('xml_submission_file').text();
  const doc = new window.DOMParser().parseFromString(xml, 'text/xml');
  const computed = {};
  for (const element of [...doc.documentElement.children]) {
    if (element.localName.startsWith('calc_')) computed[element.localName] = element.textContent;
  }
  results.push(computed);
}
console.log(JSON.stringify(results));
