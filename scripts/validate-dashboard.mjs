#!/usr/bin/env node
// Validates the Grafana dashboards in grafana/dashboards/ without a Grafana server.
//
//   node scripts/validate-dashboard.mjs [FILE.json ...]        validate (default: every
//                                                              grafana/dashboards/*.json)
//   node scripts/validate-dashboard.mjs --print-queries [FILE ...]
//
// Validation has two parts:
//
// 1. Grafana's published dashboard schema. Grafana generates TypeScript types from its CUE
//    kinds and publishes them as the npm package @grafana/schema (dashboard, row, panel,
//    variables, and each core panel plugin's Options and FieldConfig); the Prometheus query
//    type comes from @grafana/grafana-foundation-sdk, generated from the same CUE by Grafana.
//    This script writes the dashboard as a TypeScript module in memory — the top level, each
//    panel with its own plugin's types, each query, each field-override value — and has the
//    TypeScript compiler check it with `satisfies`: unknown keys (excess properties), wrong
//    types, missing required fields and values outside an enum are errors. A panel type
//    without a schema in @grafana/schema (deprecated `graph`/`singlestat`, or a plugin) is an
//    error too. Needs the pinned packages: `npm ci --prefix grafana` (grafana/package.json).
//
// 2. What a schema cannot say: every panel and query uses the data source `${datasource}`,
//    panel ids are unique, gridPos lies within the 24 columns without overlaps, every query
//    has an expr and a unique refId, every `$variable` used is defined, repeats name a
//    variable.
//
// --print-queries needs no npm package: it prints one JSON object per line,
// {"panel": title, "expr": expr}, with $target, $check, $heartbeat and $job replaced by `.+`,
// $__rate_interval by 1m, $__interval by 15s and $__range by 1h, for every panel query and
// for the series selector of every label_values() variable query ("panel": "variable NAME").
//
// Exit status: 0 when every check passed, 1 on any error, 2 on bad usage or missing tools.

import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const GRAFANA = path.join(ROOT, 'grafana');
const DASHBOARDS = path.join(GRAFANA, 'dashboards');
const GRID_COLUMNS = 24;
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

// Values for --print-queries: multi-value variables match everything; Grafana's interval
// variables get plausible values for a 15 s scrape interval.
const SUBSTITUTIONS = {
  target: '.+',
  check: '.+',
  heartbeat: '.+',
  job: '.+',
  __rate_interval: '1m',
  __interval: '15s',
  __interval_ms: '15000',
  __range: '1h',
  __range_s: '3600',
  __range_ms: '3600000',
};
// Grafana's global variables, allowed in queries and titles without a definition.
const BUILTIN_VARIABLES = new Set([
  '__rate_interval', '__interval', '__interval_ms', '__range', '__range_s', '__range_ms',
  '__from', '__to', '__dashboard', '__user', '__org', '__name', '__timeFilter',
]);
// Panels that have no queries.
const PANELS_WITHOUT_QUERIES = new Set(['text', 'news', 'dashlist', 'annolist']);
// Panel ids whose schema directory in @grafana/schema has another name.
const PANEL_SCHEMA_ALIASES = { dashlist: 'dashboardlist', annolist: 'annotationslist' };

const VARIABLE_RE = /\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)/g;

function usage(message) {
  if (message) console.error(`error: ${message}`);
  console.error('usage: node scripts/validate-dashboard.mjs [--print-queries] [FILE.json ...]');
  process.exit(2);
}

function dashboardFiles(args) {
  if (args.length > 0) return args.map((f) => path.resolve(f));
  if (!existsSync(DASHBOARDS)) usage(`no folder ${DASHBOARDS}`);
  const files = readdirSync(DASHBOARDS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => path.join(DASHBOARDS, f));
  if (files.length === 0) usage(`no .json file in ${DASHBOARDS}`);
  return files;
}

const rel = (file) => path.relative(process.cwd(), file) || file;

function loadJson(file, errors) {
  try {
    const value = JSON.parse(readFileSync(file, 'utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      errors.push('not a JSON object');
      return null;
    }
    return value;
  } catch (e) {
    errors.push(`cannot read or parse: ${e.message}`);
    return null;
  }
}

/** Every panel: top-level ones, and those nested in (collapsed) rows. */
function* walkPanels(dashboard) {
  const top = Array.isArray(dashboard.panels) ? dashboard.panels : [];
  for (const [index, panel] of top.entries()) {
    yield { panel, where: `panels[${index}]`, parent: null };
    if (panel && panel.type === 'row' && Array.isArray(panel.panels)) {
      for (const [i, child] of panel.panels.entries()) {
        yield { panel: child, where: `panels[${index}].panels[${i}]`, parent: panel };
      }
    }
  }
}

function describe(panel, where) {
  if (!panel || typeof panel !== 'object') return where;
  const id = panel.id === undefined ? '' : ` id=${panel.id}`;
  return `${panel.type ?? '?'} panel${id} ${JSON.stringify(panel.title ?? '')}`;
}

function substitute(text) {
  const unknown = new Set();
  const out = text.replace(VARIABLE_RE, (match, a, b, c) => {
    const name = a ?? b ?? c;
    if (Object.hasOwn(SUBSTITUTIONS, name)) return SUBSTITUTIONS[name];
    unknown.add(name);
    return match;
  });
  return { out, unknown };
}

/** label_values(SELECTOR, label) → SELECTOR; query_result(EXPR) → EXPR; else null. */
function variableSeriesQuery(variable) {
  const q = typeof variable.query === 'string' ? variable.query : variable.query?.query;
  if (typeof q !== 'string') return null;
  let m = q.match(/^\s*label_values\(\s*(.+)\s*,\s*[A-Za-z_]\w*\s*\)\s*$/s);
  if (m) return m[1].trim();
  m = q.match(/^\s*query_result\(\s*(.+)\s*\)\s*$/s);
  if (m) return m[1].trim();
  return null;
}

// ------------------------------------------------------------------ --print-queries

function printQueries(files) {
  let failed = false;
  for (const file of files) {
    const errors = [];
    const dashboard = loadJson(file, errors);
    if (!dashboard) {
      console.error(`${rel(file)}: ${errors.join('; ')}`);
      failed = true;
      continue;
    }
    const emit = (panel, expr) => {
      const { out, unknown } = substitute(expr);
      if (unknown.size > 0) {
        console.error(`${rel(file)}: ${panel}: no value for ${[...unknown].map((v) => '$' + v).join(', ')}`);
        failed = true;
        return;
      }
      console.log(JSON.stringify({ panel, expr: out }));
    };
    for (const variable of dashboard.templating?.list ?? []) {
      if (variable?.type !== 'query') continue;
      const selector = variableSeriesQuery(variable);
      if (selector) emit(`variable ${variable.name}`, selector);
    }
    for (const { panel } of walkPanels(dashboard)) {
      if (!panel || panel.type === 'row') continue;
      for (const target of panel.targets ?? []) {
        if (target?.hide) continue;
        if (typeof target?.expr !== 'string' || target.expr.trim() === '') {
          console.error(`${rel(file)}: ${describe(panel)}: query ${target?.refId ?? '?'} has no expr`);
          failed = true;
          continue;
        }
        emit(panel.title ?? '', target.expr);
      }
    }
  }
  process.exit(failed ? 1 : 0);
}

// ------------------------------------------------------------------ checks beyond the schema

function sameDatasource(ds) {
  return ds && typeof ds === 'object' && ds.type === DATASOURCE.type && ds.uid === DATASOURCE.uid
    && Object.keys(ds).every((k) => k === 'type' || k === 'uid');
}

function structuralChecks(dashboard, report) {
  const errors = [];
  const err = (where, msg) => errors.push(`${where}: ${msg}`);

  for (const key of ['uid', 'title']) {
    if (typeof dashboard[key] !== 'string' || dashboard[key] === '') err('dashboard', `no ${key}`);
  }

  // Template variables.
  const variables = dashboard.templating?.list ?? [];
  const defined = new Map();
  for (const v of variables) {
    if (!v || typeof v.name !== 'string') continue;
    if (defined.has(v.name)) err(`variable ${v.name}`, 'defined twice');
    defined.set(v.name, v);
  }
  const dsVar = defined.get('datasource');
  if (!dsVar || dsVar.type !== 'datasource' || dsVar.query !== 'prometheus') {
    err('variable datasource', 'missing, or not {type: "datasource", query: "prometheus"}');
  }
  for (const v of variables) {
    if (v?.type === 'query' && !sameDatasource(v.datasource)) {
      err(`variable ${v.name}`, `datasource must be ${JSON.stringify(DATASOURCE)}`);
    }
  }
  const used = new Set();
  const checkVariables = (where, text) => {
    if (typeof text !== 'string') return;
    for (const m of text.matchAll(VARIABLE_RE)) {
      const name = m[1] ?? m[2] ?? m[3];
      used.add(name);
      if (!defined.has(name) && !BUILTIN_VARIABLES.has(name)) err(where, `uses undefined variable $${name}`);
    }
  };
  for (const v of variables) {
    const q = typeof v?.query === 'string' ? v.query : v?.query?.query;
    checkVariables(`variable ${v?.name}`, q);
  }

  // Panels.
  const ids = new Map();
  let panelCount = 0;
  let queryCount = 0;
  const topRects = [];
  for (const { panel, where, parent } of walkPanels(dashboard)) {
    if (!panel || typeof panel !== 'object') {
      err(where, 'not an object');
      continue;
    }
    const name = describe(panel, where);
    if (typeof panel.id !== 'number' || !Number.isInteger(panel.id)) {
      err(name, 'no integer id');
    } else if (ids.has(panel.id)) {
      err(name, `id ${panel.id} also used by ${ids.get(panel.id)}`);
    } else {
      ids.set(panel.id, name);
    }

    const g = panel.gridPos;
    if (!g || typeof g !== 'object') {
      err(name, 'no gridPos');
    } else {
      const bad = ['x', 'y', 'w', 'h'].filter((k) => !Number.isInteger(g[k]));
      if (bad.length > 0) {
        err(name, `gridPos.${bad.join(', gridPos.')} not an integer`);
      } else if (g.x < 0 || g.y < 0 || g.w < 1 || g.h < 1 || g.x + g.w > GRID_COLUMNS) {
        err(name, `gridPos ${JSON.stringify(g)} outside the ${GRID_COLUMNS} columns (x >= 0, w >= 1, x + w <= ${GRID_COLUMNS})`);
      } else if (!parent) {
        topRects.push({ name, ...g });
      }
    }

    checkVariables(`${name} title`, panel.title);
    if (panel.repeat !== undefined) {
      const v = defined.get(panel.repeat);
      if (!v) err(name, `repeats over undefined variable ${panel.repeat}`);
      else if (!v.multi && !v.includeAll) err(name, `repeats over ${panel.repeat}, which is neither multi nor include-all`);
    }

    if (panel.type === 'row') {
      if (parent) err(name, 'a row inside a row');
      if (!panel.collapsed && Array.isArray(panel.panels) && panel.panels.length > 0) {
        err(name, 'an expanded row keeps its panels after it in the top-level list, not in row.panels');
      }
      continue;
    }

    panelCount += 1;
    if (!sameDatasource(panel.datasource)) {
      err(name, `datasource is ${JSON.stringify(panel.datasource)}, want ${JSON.stringify(DATASOURCE)}`);
    }
    const targets = panel.targets;
    if (!Array.isArray(targets) || targets.length === 0) {
      if (!PANELS_WITHOUT_QUERIES.has(panel.type)) err(name, 'no queries (targets)');
      continue;
    }
    const refIds = new Set();
    for (const [i, t] of targets.entries()) {
      queryCount += 1;
      const tname = `${name} query ${t?.refId ?? `#${i}`}`;
      if (typeof t?.refId !== 'string' || t.refId === '') err(tname, 'no refId');
      else if (refIds.has(t.refId)) err(tname, `refId ${t.refId} used twice`);
      else refIds.add(t.refId);
      if (typeof t?.expr !== 'string' || t.expr.trim() === '') err(tname, 'no expr');
      if (t?.datasource !== undefined && !sameDatasource(t.datasource)) {
        err(tname, `datasource is ${JSON.stringify(t.datasource)}, want ${JSON.stringify(DATASOURCE)}`);
      }
      checkVariables(tname, t?.expr);
      checkVariables(`${tname} legend`, t?.legendFormat);
    }
  }

  // Overlaps among top-level panels (panels of collapsed rows are laid out when expanded).
  for (let i = 0; i < topRects.length; i += 1) {
    for (let j = i + 1; j < topRects.length; j += 1) {
      const a = topRects[i];
      const b = topRects[j];
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) {
        err(a.name, `overlaps ${b.name}`);
      }
    }
  }

  report.push(`every panel's and query's datasource is ${JSON.stringify(DATASOURCE)} (${panelCount} panels, ${queryCount} queries)`);
  report.push(`panel ids unique (${ids.size})`);
  report.push(`gridPos within ${GRID_COLUMNS} columns, no overlaps (${topRects.length} top-level)`);
  report.push('every query has an expr and a refId unique in its panel');
  report.push(`variables used are defined or Grafana's: ${[...used].sort().map((v) => '$' + v).join(' ')}`);
  return errors;
}

// ------------------------------------------------------------------ schema (TypeScript)

function loadSchemaTools() {
  const require = createRequire(path.join(GRAFANA, 'package.json'));
  const pinned = JSON.parse(readFileSync(path.join(GRAFANA, 'package.json'), 'utf8')).devDependencies;
  const versions = {};
  for (const name of Object.keys(pinned)) {
    let version;
    try {
      // (@grafana/grafana-foundation-sdk 0.0.21 writes its version "v0.0.21")
      version = String(JSON.parse(readFileSync(path.join(GRAFANA, 'node_modules', name, 'package.json'), 'utf8')).version).replace(/^v/, '');
    } catch {
      return { error: `${name} is not installed: run \`npm ci --prefix grafana\`` };
    }
    if (version !== pinned[name]) {
      return { error: `${name} ${version} is installed, grafana/package.json pins ${pinned[name]}: run \`npm ci --prefix grafana\`` };
    }
    versions[name] = version;
  }
  const ts = require('typescript');
  const schemaDir = path.join(GRAFANA, 'node_modules', '@grafana', 'schema');
  const schemaPkg = JSON.parse(readFileSync(path.join(schemaDir, 'package.json'), 'utf8'));
  // Core panel plugins with a schema: ./dist/esm/raw/composable/<dir>/panelcfg/x/<Name>_types.gen
  const panelSchemas = new Map();
  for (const [key, value] of Object.entries(schemaPkg.exports)) {
    const m = key.match(/^\.\/dist\/esm\/raw\/composable\/([^/]+)\/panelcfg\/x\/\w+_types\.gen$/);
    if (!m) continue;
    const text = readFileSync(path.join(schemaDir, value.types), 'utf8');
    panelSchemas.set(m[1], {
      module: `@grafana/schema${key.slice(1)}`,
      options: /export interface Options\b/.test(text),
      fieldConfig: /export interface FieldConfig\b/.test(text),
    });
  }
  return { ts, versions, panelSchemas, schemaDir };
}

function panelSchemaFor(tools, type) {
  if (typeof type !== 'string') return null;
  const dir = PANEL_SCHEMA_ALIASES[type] ?? type.toLowerCase().replace(/-/g, '');
  return tools.panelSchemas.get(dir) ? { dir, ...tools.panelSchemas.get(dir) } : null;
}

/** Type of an override property `id` ("unit", "custom.cellOptions", ...) as a TS type expression. */
function overridePropertyType(id, fieldConfigType) {
  let type = fieldConfigType;
  for (const key of id.split('.')) type = `NonNullable<${type}>[${JSON.stringify(key)}]`;
  return type;
}

function schemaChecks(tools, dashboard, report) {
  const { ts } = tools;
  const errors = [];
  const lines = [];
  const segments = [];
  const imports = new Map();
  const counts = { panels: new Map(), rows: 0, queries: 0, overrides: 0 };

  const emit = (label, code) => {
    const start = lines.length;
    lines.push(...code.split('\n'));
    segments.push({ start, end: lines.length - 1, label });
  };
  const json = (v) => JSON.stringify(v, null, 2);

  lines.push(
    "import type * as D from '@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen';",
    "import type * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';",
    '// JSON carries enum values, not TypeScript enum members: J<T> turns every string enum',
    '// into the union of its values and keeps everything else as the schema says.',
    'type J<T> = T extends string ? `${T}`',
    '  : T extends number | boolean | null | undefined ? T',
    '  : T extends readonly (infer U)[] ? J<U>[]',
    '  : T extends (...args: never[]) => unknown ? never',
    '  : T extends object ? { [K in keyof T]: J<T[K]> }',
    '  : T;',
    "type PromQuery = J<Omit<prometheus.Dataquery, '_implementsDataqueryVariant'>>;",
    "type FieldConfigOf<F> = Omit<J<D.FieldConfig>, 'custom'> & { custom?: F };",
    "type PanelOf<O, F> = Omit<J<D.Panel>, 'options' | 'fieldConfig' | 'targets'> & {",
    '  options?: O;',
    "  fieldConfig?: { defaults: FieldConfigOf<F>; overrides: J<D.FieldConfigSource['overrides']> };",
    '  targets?: PromQuery[];',
    '};',
  );
  const headerEnd = lines.length;

  const { panels, ...topLevel } = dashboard;
  emit('dashboard (top level, variables, annotations)',
    `const dashboard = ${json(topLevel)} satisfies Omit<J<D.Dashboard>, 'panels'>;`);

  let n = 0;
  for (const { panel, where } of walkPanels(dashboard)) {
    n += 1;
    const name = describe(panel, where);
    if (!panel || typeof panel !== 'object') continue;
    if (panel.type === 'row') {
      counts.rows += 1;
      const { panels: _children, ...row } = panel;
      emit(name, `const p${n} = ${json(row)} satisfies Omit<J<D.RowPanel>, 'panels'>;`);
      continue;
    }
    const schema = panelSchemaFor(tools, panel.type);
    if (!schema) {
      errors.push(`${name}: panel type ${JSON.stringify(panel.type)} has no schema in @grafana/schema ${tools.versions['@grafana/schema']} (not a core panel of current Grafana: deprecated, removed, or a plugin)`);
      continue;
    }
    const alias = `P_${schema.dir}`;
    imports.set(alias, schema.module);
    const optionsType = schema.options ? `J<${alias}.Options>` : 'Record<string, unknown>';
    const customType = schema.fieldConfig ? `J<${alias}.FieldConfig>` : 'Record<string, never>';
    counts.panels.set(panel.type, (counts.panels.get(panel.type) ?? 0) + 1);
    counts.queries += Array.isArray(panel.targets) ? panel.targets.length : 0;
    emit(name, `const p${n} = ${json(panel)} satisfies PanelOf<${optionsType}, ${customType}>;`);

    // Override values are `unknown` in the schema: check each against its property's type.
    const overrides = panel.fieldConfig?.overrides;
    if (!Array.isArray(overrides)) continue;
    for (const [i, override] of overrides.entries()) {
      for (const [j, property] of (override?.properties ?? []).entries()) {
        if (typeof property?.id !== 'string' || property.value === undefined) continue;
        counts.overrides += 1;
        const type = overridePropertyType(property.id, `FieldConfigOf<${customType}>`);
        emit(`${name} override ${i} (${override.matcher?.id} ${JSON.stringify(override.matcher?.options)}) property ${JSON.stringify(property.id)}`,
          `const p${n}_o${i}_${j} = ${json(property.value)} satisfies ${type};`);
      }
    }
  }
  const importLines = [...imports].map(([alias, module]) => `import type * as ${alias} from '${module}';`);
  lines.splice(2, 0, ...importLines);
  for (const s of segments) {
    s.start += importLines.length;
    s.end += importLines.length;
  }

  const source = lines.join('\n');
  // For debugging the check itself: VALIDATE_DASHBOARD_DUMP_TS=FILE writes the module out.
  if (process.env.VALIDATE_DASHBOARD_DUMP_TS) writeFileSync(process.env.VALIDATE_DASHBOARD_DUMP_TS, source);
  const fileName = path.join(GRAFANA, '__dashboard_schema_check__.ts');
  const options = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options, true);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang, ...rest) => (path.resolve(f) === fileName
    ? ts.createSourceFile(f, source, lang, true)
    : getSourceFile(f, lang, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => path.resolve(f) === fileName || fileExists(f);
  const readFile = host.readFile.bind(host);
  host.readFile = (f) => (path.resolve(f) === fileName ? source : readFile(f));
  const program = ts.createProgram({ rootNames: [fileName], options, host });
  const diagnostics = ts.getPreEmitDiagnostics(program);

  for (const d of diagnostics) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n').split('\n');
    const shown = message.slice(0, 8).map((l, i) => (i === 0 ? l : `      ${l.trim()}`)).join('\n');
    const more = message.length > 8 ? `\n      (${message.length - 8} more lines)` : '';
    if (!d.file || path.resolve(d.file.fileName) !== fileName) {
      errors.push(`schema check itself: ${shown}${more}`);
      continue;
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    const segment = segments.find((s) => line >= s.start && line <= s.end);
    const label = segment ? segment.label : (line < headerEnd + importLines.length ? 'schema imports' : 'dashboard');
    errors.push(`${label}: ${shown}${more}\n      at: ${lines[line].trim()}`);
  }

  const perType = [...counts.panels].map(([t, c]) => `${t} ×${c}`).join(', ');
  report.push('dashboard top level, template variables and annotations against Dashboard');
  report.push(`${counts.rows} rows against RowPanel`);
  report.push(`${[...counts.panels.values()].reduce((a, b) => a + b, 0)} panels against Panel and their plugin's Options and FieldConfig (${perType})`);
  report.push(`${counts.queries} queries against the Prometheus data source's query schema`);
  report.push(`${counts.overrides} field-override values against their property's type`);
  return errors;
}

async function schemaVersionLimit(tools) {
  try {
    const mod = await import(pathToFileURL(path.join(tools.schemaDir, 'dist/esm/raw/dashboard/x/types.gen.mjs')).href);
    return mod.defaultDashboard?.schemaVersion ?? null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ main

async function validate(files) {
  const tools = loadSchemaTools();
  if (tools.error) {
    console.error(`error: schema check impossible: ${tools.error}`);
  } else {
    const v = tools.versions;
    console.log(`schema: @grafana/schema ${v['@grafana/schema']} (dashboard, row, panel, variables, ${tools.panelSchemas.size} core panel plugins), ` +
      `@grafana/grafana-foundation-sdk ${v['@grafana/grafana-foundation-sdk']} (Prometheus query), checked by TypeScript ${v.typescript}`);
  }
  const maxSchemaVersion = tools.error ? null : await schemaVersionLimit(tools);
  let total = 0;
  for (const file of files) {
    const errors = [];
    const report = [];
    const dashboard = loadJson(file, errors);
    console.log(`${rel(file)}`);
    if (dashboard) {
      if (!tools.error) errors.push(...schemaChecks(tools, dashboard, report));
      const sv = dashboard.schemaVersion;
      if (maxSchemaVersion !== null && Number.isInteger(sv) && sv > maxSchemaVersion) {
        errors.push(`dashboard: schemaVersion ${sv} is newer than the schema's ${maxSchemaVersion}`);
      } else if (maxSchemaVersion !== null && Number.isInteger(sv)) {
        report.push(`schemaVersion ${sv} (the schema's current: ${maxSchemaVersion})`);
      }
      errors.push(...structuralChecks(dashboard, report));
    }
    for (const line of report) console.log(`  checked: ${line}`);
    for (const e of errors) console.log(`  ERROR ${e}`);
    console.log(`  ${errors.length === 0 ? 'OK' : `${errors.length} error(s)`}`);
    total += errors.length;
  }
  if (tools.error) {
    console.log('FAILED: the schema was not checked');
    process.exit(2);
  }
  console.log(`${files.length} dashboard(s), ${total} error(s)`);
  process.exit(total === 0 ? 0 : 1);
}

const args = process.argv.slice(2);
if (args.includes('-h') || args.includes('--help')) usage();
const printMode = args.includes('--print-queries');
const rest = args.filter((a) => a !== '--print-queries');
const unknownFlag = rest.find((a) => a.startsWith('-'));
if (unknownFlag) usage(`unknown option ${unknownFlag}`);
const files = dashboardFiles(rest);
if (printMode) printQueries(files);
else await validate(files);
