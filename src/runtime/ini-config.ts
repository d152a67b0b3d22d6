/**
 * OpenMSIStream-style config files: a reader compatible with Python's `configparser.ConfigParser()` defaults (as
 * OpenMSIStream uses it) plus OpenMSIStream's own rules on top, and the mapping of the `[broker]` section to the
 * Kafka transport's options.
 *
 * configparser behaviour reproduced here:
 * - `[section]` headers (names case-sensitive); `[DEFAULT]` values appear in every section;
 * - `key = value` or `key: value`, split at the first `=` or `:`; keys are lower-cased; both sides trimmed;
 * - full-line comments start with `#` or `;` (after optional indentation); there are no inline comments, so
 *   `key = a # b` has the value `a # b`;
 * - a line indented deeper than its key line continues the value (joined with newlines, trailing blank lines
 *   dropped); empty lines inside such a value are kept;
 * - duplicate sections or keys, text before the first section, and lines without a delimiter are errors;
 * - `%` interpolation (BasicInterpolation): `%%` is a literal `%`, `%(other)s` is another key of the same section
 *   (or `[DEFAULT]`), any other `%` is an error.
 *
 * OpenMSIStream's rules: a value that *starts with* `$` is expanded from the environment (`$VAR`, `${VAR}`), and a
 * variable that is not set is an error naming it; `node_id` (a `[DEFAULT]` key) is dropped from the broker,
 * producer and consumer sections.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { SluiceError } from '../errors.ts';
import type { KafkaSaslOptions, KafkaTransportOptions, SaslMechanism } from '../transport/kafka/options.ts';

export interface IniDocument {
  /** Where the text came from, for messages. */
  source: string;
  /** `[DEFAULT]` keys (raw, not interpolated). */
  defaults: Map<string, string>;
  /** Every other section, in file order (raw values). */
  sections: Map<string, Map<string, string>>;
}

const DEFAULT_SECTION = 'DEFAULT';
const MAX_INTERPOLATION_DEPTH = 10;

function fileError(source: string, line: number, message: string): SluiceError {
  return new SluiceError('SLUICE_CONFIG_FILE', `${source}, line ${line}: ${message}`, {
    details: { source, line },
  });
}

/** Parses configparser-style INI text. Values are raw (no interpolation, no environment expansion). */
export function parseIni(text: string, source = '<config>'): IniDocument {
  const doc: IniDocument = { source, defaults: new Map(), sections: new Map() };
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
  let current: Map<string, string[]> | undefined;
  let currentName: string | undefined;
  let optname: string | undefined;
  let indentLevel = 0;
  const raw = new Map<string, Map<string, string[]>>();
  const rawDefaults = new Map<string, string[]>();
  const seenSections = new Set<string>();
  const seenOptions = new Set<string>();

  lines.forEach((line, index) => {
    const lineno = index + 1;
    const stripped = line.trim();
    const isComment = stripped.startsWith('#') || stripped.startsWith(';');
    const value = isComment ? '' : stripped;
    if (value === '') {
      // an empty line (not a comment) inside a value becomes part of it
      if (!isComment && current !== undefined && optname !== undefined) current.get(optname)!.push('');
      return;
    }
    const indent = line.search(/\S/);
    if (current !== undefined && optname !== undefined && indent > indentLevel) {
      current.get(optname)!.push(value);
      return;
    }
    indentLevel = indent;
    const header = /^\[(.+)\]/.exec(value);
    if (header) {
      const name = header[1]!;
      if (name === DEFAULT_SECTION) {
        current = rawDefaults;
      } else {
        if (seenSections.has(name)) {
          throw fileError(
            source,
            lineno,
            `section [${name}] appears twice. Merge the two sections into one.`,
          );
        }
        seenSections.add(name);
        current = new Map();
        raw.set(name, current);
      }
      currentName = name;
      optname = undefined;
      return;
    }
    if (current === undefined) {
      throw fileError(
        source,
        lineno,
        `"${value}" comes before any [section] header. Put settings under a header such as [broker].`,
      );
    }
    const option = /^(.*?)\s*[=:]\s*(.*)$/.exec(value);
    if (!option || option[1]!.trim() === '') {
      throw fileError(
        source,
        lineno,
        `cannot read "${value}" in [${currentName}]: expected "key = value". Add the "=" (or remove the line, or start it with # to comment it out).`,
      );
    }
    const key = option[1]!.trimEnd().toLowerCase();
    const id = `${currentName}\0${key}`;
    if (seenOptions.has(id)) {
      throw fileError(
        source,
        lineno,
        `key "${key}" appears twice in [${currentName}]. Keep only one of them.`,
      );
    }
    seenOptions.add(id);
    optname = key;
    current.set(key, [option[2]!.trim()]);
  });

  const join = (v: string[]): string => v.join('\n').trimEnd();
  for (const [k, v] of rawDefaults) doc.defaults.set(k, join(v));
  for (const [name, options] of raw) {
    const section = new Map<string, string>();
    for (const [k, v] of options) section.set(k, join(v));
    doc.sections.set(name, section);
  }
  return doc;
}

/** Reads and parses an INI file; a missing or unreadable file is SLUICE_CONFIG_FILE naming the path. */
export function readIniFile(path: string): IniDocument {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SluiceError(
      'SLUICE_CONFIG_FILE',
      `Cannot read config file ${path}: ${(err as Error).message}. Check the path (and --config), and that the file is readable.`,
      { cause: err, details: { path } },
    );
  }
  return parseIni(text, path);
}

/** configparser's BasicInterpolation of one value of `section`. */
function interpolate(
  value: string,
  key: string,
  sectionName: string,
  lookup: Map<string, string>,
  source: string,
  depth = 0,
): string {
  if (depth > MAX_INTERPOLATION_DEPTH) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `${source}: [${sectionName}] ${key}: %(...)s references nest more than ${MAX_INTERPOLATION_DEPTH} deep (a reference loop?). Break the loop.`,
    );
  }
  let out = '';
  let rest = value;
  while (rest !== '') {
    const p = rest.indexOf('%');
    if (p < 0) return out + rest;
    out += rest.slice(0, p);
    rest = rest.slice(p);
    const c = rest[1];
    if (c === '%') {
      out += '%';
      rest = rest.slice(2);
    } else if (c === '(') {
      const m = /^%\(([^)]+)\)s/.exec(rest);
      if (!m) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `${source}: [${sectionName}] ${key}: bad reference "${rest}". Write %(other_key)s to use another key's value, or %% for a literal %.`,
        );
      }
      const ref = m[1]!.toLowerCase();
      rest = rest.slice(m[0].length);
      const v = lookup.get(ref);
      if (v === undefined) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `${source}: [${sectionName}] ${key} refers to %(${ref})s, but [${sectionName}] and [DEFAULT] have no key "${ref}". Define it, or write %% for a literal %.`,
        );
      }
      out += v.includes('%') ? interpolate(v, key, sectionName, lookup, source, depth + 1) : v;
    } else {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `${source}: [${sectionName}] ${key}: a "%" must be followed by "%" or "(" (found "${rest.slice(0, 10)}"). Write %% for a literal % (configparser interpolation).`,
      );
    }
  }
  return out;
}

/**
 * OpenMSIStream's environment expansion: only a value that starts with `$` is expanded; `$NAME` and `${NAME}`
 * anywhere in it are replaced. A variable that is not set is an error naming it.
 */
export function expandEnv(
  value: string,
  where: string,
  env: Record<string, string | undefined> = process.env,
): string {
  if (!value.startsWith('$')) return value;
  return value.replace(
    /\$(\w+)|\$\{([^}]*)\}/g,
    (whole, plain: string | undefined, braced: string | undefined) => {
      const name = plain ?? braced ?? '';
      const v = env[name];
      if (v === undefined) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `${where} is ${JSON.stringify(value)}, but the environment variable ${name} is not set. Set ${name} (export ${name}=...) or write the value into the config file. (${whole})`,
          { details: { variable: name } },
        );
      }
      return v;
    },
  );
}

export interface SectionOptions {
  /** The environment for `$VAR` expansion. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Keys to leave out (OpenMSIStream drops `node_id` from broker/producer/consumer). */
  drop?: string[];
}

/**
 * One section as configparser's `items()` returns it (with `[DEFAULT]`, interpolated), then expanded as
 * OpenMSIStream does. An unknown section is an error listing the ones that exist.
 */
export function getSection(
  doc: IniDocument,
  name: string,
  options: SectionOptions = {},
): Record<string, string> {
  const section = doc.sections.get(name);
  if (section === undefined) {
    const names = [...doc.sections.keys()];
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `${doc.source} has no [${name}] section (it has: ${names.map((n) => `[${n}]`).join(', ') || 'none'}). Add a [${name}] section.`,
    );
  }
  const lookup = new Map<string, string>([...doc.defaults, ...section]);
  const drop = new Set(options.drop ?? []);
  const out: Record<string, string> = {};
  for (const [key, raw] of lookup) {
    if (drop.has(key)) continue;
    const interpolated = interpolate(raw, key, name, lookup, doc.source);
    out[key] = expandEnv(interpolated, `${doc.source}: [${name}] ${key}`, options.env);
  }
  return out;
}

/** The section names of the file (without `[DEFAULT]`), in file order. */
export function sectionNames(doc: IniDocument): string[] {
  return [...doc.sections.keys()];
}

/**
 * Finds a config file as OpenMSIStream's `--config` does: a value without a `.` gets `.config` appended; it is
 * used as a path when that file exists, else looked up in `$OPENMSISTREAM_CONFIG_FILE_DIR`.
 */
export function resolveConfigPath(
  value: string,
  options: {
    env?: Record<string, string | undefined>;
    cwd?: string;
    exists?: (path: string) => boolean;
  } = {},
): string {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const exists =
    options.exists ??
    ((p: string) => {
      try {
        readFileSync(p);
        return true;
      } catch {
        return false;
      }
    });
  const name = value.includes('.') ? value : `${value}.config`;
  const direct = isAbsolute(name) ? name : resolve(cwd, name);
  if (exists(direct)) return direct;
  const dir = env.OPENMSISTREAM_CONFIG_FILE_DIR;
  if (dir !== undefined && dir !== '' && !isAbsolute(name)) {
    const inDir = join(dir, name);
    if (exists(inDir)) return inDir;
  }
  throw new SluiceError(
    'SLUICE_CONFIG_FILE',
    `Config file "${value}" not found (looked for ${direct}${dir ? ` and ${join(dir, name)}` : ''}). Pass a path to an existing file, or set OPENMSISTREAM_CONFIG_FILE_DIR to the directory holding ${name}.`,
  );
}

// ---- [broker] → Kafka transport options ------------------------------------------------------------------------

/** The `[broker]` keys sluice understands (librdkafka names, as in OpenMSIStream config files). */
export const BROKER_KEYS = [
  'bootstrap.servers',
  'security.protocol',
  'sasl.mechanism',
  'sasl.mechanisms',
  'sasl.username',
  'sasl.password',
  'ssl.ca.location',
  'client.id',
] as const;

const SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const;
const SASL: readonly SaslMechanism[] = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'OAUTHBEARER'];

/**
 * Maps a `[broker]` section (as from `getSection`) to Kafka transport options. Unknown keys and bad values are
 * errors that name the key and the fix; nothing is ignored silently.
 */
export function brokerSectionToKafkaOptions(
  broker: Record<string, string>,
  options: { source?: string; readFile?: (path: string) => Buffer } = {},
): KafkaTransportOptions {
  const where = (key: string): string => `${options.source ?? 'config'}: [broker] ${key}`;
  const bad = (key: string, message: string): SluiceError =>
    new SluiceError('SLUICE_CONFIG_INVALID', `${where(key)} ${message}`, { details: { key } });
  for (const key of Object.keys(broker)) {
    if (!(BROKER_KEYS as readonly string[]).includes(key)) {
      throw bad(
        key,
        `is not a setting sluice understands. Supported [broker] keys: ${BROKER_KEYS.join(', ')}. Remove the line (or move producer/consumer settings to [producer]/[consumer]).`,
      );
    }
  }
  if (broker['sasl.mechanism'] !== undefined && broker['sasl.mechanisms'] !== undefined) {
    throw bad('sasl.mechanisms', 'duplicates sasl.mechanism. Keep only sasl.mechanism.');
  }
  const servers = broker['bootstrap.servers'];
  if (servers === undefined || servers.trim() === '') {
    throw bad(
      'bootstrap.servers',
      'is missing. Set it to the broker address(es), e.g. bootstrap.servers = 127.0.0.1:9092.',
    );
  }
  const result: KafkaTransportOptions = {
    bootstrapServers: servers
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  };
  const clientId = broker['client.id'];
  if (clientId !== undefined) {
    if (!/^[\w.-]+$/.test(clientId)) {
      throw bad('client.id', `is "${clientId}"; use letters, digits, ".", "_" and "-".`);
    }
    result.clientId = clientId;
  }
  const protocolRaw = broker['security.protocol'] ?? 'PLAINTEXT';
  const protocol = protocolRaw.toUpperCase() as (typeof SECURITY_PROTOCOLS)[number];
  if (!SECURITY_PROTOCOLS.includes(protocol)) {
    throw bad('security.protocol', `is "${protocolRaw}"; use one of ${SECURITY_PROTOCOLS.join(', ')}.`);
  }
  const usesTls = protocol === 'SSL' || protocol === 'SASL_SSL';
  const usesSasl = protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL';

  const mechanismKey = broker['sasl.mechanism'] !== undefined ? 'sasl.mechanism' : 'sasl.mechanisms';
  const mechanismRaw = broker[mechanismKey];
  if (!usesSasl) {
    for (const key of ['sasl.mechanism', 'sasl.mechanisms', 'sasl.username', 'sasl.password']) {
      if (broker[key] !== undefined) {
        throw bad(
          key,
          `is set, but security.protocol is ${protocol}, which does not use SASL. Set security.protocol = SASL_SSL (or SASL_PLAINTEXT), or remove the sasl.* keys.`,
        );
      }
    }
  } else {
    if (mechanismRaw === undefined) {
      throw bad(
        'sasl.mechanism',
        `is missing but security.protocol is ${protocol}. Set sasl.mechanism to one of ${SASL.join(', ')} (GSSAPI/Kerberos is not supported).`,
      );
    }
    const mechanism = mechanismRaw.toUpperCase() as SaslMechanism;
    if (!SASL.includes(mechanism)) {
      throw bad(
        mechanismKey,
        `is "${mechanismRaw}"; use one of ${SASL.join(', ')} (GSSAPI/Kerberos is not supported).`,
      );
    }
    const sasl: KafkaSaslOptions = { mechanism };
    if (mechanism === 'OAUTHBEARER') {
      throw bad(
        mechanismKey,
        'is OAUTHBEARER, which needs a token provider that a config file cannot express. Use PLAIN or SCRAM in the file, or pass sasl: { mechanism: "OAUTHBEARER", token } to openKafkaTransport.',
      );
    }
    for (const key of ['sasl.username', 'sasl.password'] as const) {
      if (broker[key] === undefined || broker[key] === '') {
        throw bad(key, `is missing; SASL ${mechanism} needs sasl.username and sasl.password.`);
      }
    }
    sasl.username = broker['sasl.username'];
    sasl.password = broker['sasl.password'];
    result.sasl = sasl;
  }

  const ca = broker['ssl.ca.location'];
  if (ca !== undefined && !usesTls) {
    throw bad(
      'ssl.ca.location',
      `is set, but security.protocol is ${protocol}, which does not use TLS. Set security.protocol = SSL or SASL_SSL, or remove ssl.ca.location.`,
    );
  }
  if (usesTls) {
    if (ca === undefined || ca === '' || ca === 'probe') {
      result.tls = true;
    } else {
      const read = options.readFile ?? ((p: string) => readFileSync(p));
      try {
        result.tls = { ca: read(ca) };
      } catch (err) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `${where('ssl.ca.location')} is "${ca}", which cannot be read (${(err as Error).message}). Point it at a PEM file with the CA certificate(s), or remove it to use the system CAs.`,
          { cause: err, details: { key: 'ssl.ca.location' } },
        );
      }
    }
  }
  return result;
}

export interface OpenMsiStreamConfig {
  path: string;
  document: IniDocument;
  /** The Kafka transport options from `[broker]`. */
  kafka: KafkaTransportOptions;
  /** `[broker]` merged with `[producer]` / `[consumer]` when present, as OpenMSIStream builds client configs. */
  producer: Record<string, string> | undefined;
  consumer: Record<string, string> | undefined;
}

/**
 * Reads an OpenMSIStream config file (found as `--config` finds it, see `resolveConfigPath`) and maps its
 * `[broker]` section.
 */
export function loadOpenMsiStreamConfig(
  config: string,
  options: { env?: Record<string, string | undefined>; cwd?: string } = {},
): OpenMsiStreamConfig {
  const path = resolveConfigPath(config, { env: options.env, cwd: options.cwd });
  const document = readIniFile(path);
  const opts = { env: options.env, drop: ['node_id'] };
  const broker = getSection(document, 'broker', opts);
  const withBroker = (name: string): Record<string, string> | undefined =>
    document.sections.has(name) ? { ...broker, ...getSection(document, name, opts) } : undefined;
  return {
    path,
    document,
    kafka: brokerSectionToKafkaOptions(broker, { source: path }),
    producer: withBroker('producer'),
    consumer: withBroker('consumer'),
  };
}

/** Alias of `loadOpenMsiStreamConfig` (the name `src/transport/open.ts` uses). */
export const loadOpenMsiConfig = loadOpenMsiStreamConfig;

/** The Kafka transport options of a loaded config file. */
export function kafkaOptionsFromConfig(config: OpenMsiStreamConfig): KafkaTransportOptions {
  return config.kafka;
}
