import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import {
  brokerSectionToKafkaOptions,
  expandEnv,
  getSection,
  kafkaOptionsFromConfig,
  loadOpenMsiConfig,
  parseIni,
  resolveConfigPath,
  sectionNames,
} from '../../../src/runtime/ini-config.ts';

/** Asserts a SluiceError with `code` whose message contains every fragment (what went wrong and the fix). */
function throwsCode(fn: () => unknown, code: string, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isSluiceError(err, code as never), `expected ${code}, got ${String(err)}`);
    for (const f of fragments)
      assert.ok((err as Error).message.includes(f), `"${(err as Error).message}" lacks "${f}"`);
    return true;
  });
}

// The expected values below are what Python 3's configparser.ConfigParser() returns for the same text
// (dict(c[section].items()), with KAFKA_BOOTSTRAP and KAFKA_USER unset for the raw values).
const SAMPLE = `# leading comment
; another
[DEFAULT]
node_id = abc
Shared.Key = from-default

[broker]
bootstrap.servers = $KAFKA_BOOTSTRAP
Security.Protocol: SASL_SSL
sasl.mechanism=PLAIN
sasl.username = \${KAFKA_USER}
sasl.password = p%%ss # not a comment
    continued line

  # indented comment
empty =
colon:in:key = x
ref = %(sasl.mechanism)s-%(shared.key)s

[producer]
batch.size = 2000000
linger.ms = 100
  extra = indented option
`;

describe('INI reader (configparser-compatible)', () => {
  it('reads sections, lower-cases keys, joins continuation lines, interpolates like configparser', () => {
    const doc = parseIni(SAMPLE, 'sample.ini');
    assert.deepEqual(sectionNames(doc), ['broker', 'producer']);
    const env = { KAFKA_BOOTSTRAP: 'h:1', KAFKA_USER: 'u' };
    assert.deepEqual(getSection(doc, 'broker', { env }), {
      'bootstrap.servers': 'h:1',
      'security.protocol': 'SASL_SSL',
      'sasl.mechanism': 'PLAIN',
      'sasl.username': 'u',
      'sasl.password': 'p%ss # not a comment\ncontinued line',
      empty: '',
      colon: 'in:key = x',
      ref: 'PLAIN-from-default',
      node_id: 'abc',
      'shared.key': 'from-default',
    });
    assert.deepEqual(getSection(doc, 'producer', { env, drop: ['node_id'] }), {
      'batch.size': '2000000',
      'linger.ms': '100\nextra = indented option',
      'shared.key': 'from-default',
    });
  });

  it('handles CRLF line ends and a byte-order mark', () => {
    const doc = parseIni('\uFEFF[broker]\r\nbootstrap.servers = a:1\r\n', 'x');
    assert.deepEqual(getSection(doc, 'broker', { env: {} }), { 'bootstrap.servers': 'a:1' });
  });

  it('section values override [DEFAULT]', () => {
    const doc = parseIni('[DEFAULT]\nk = d\n[s]\nk = s\n');
    assert.equal(getSection(doc, 's', { env: {} }).k, 's');
  });

  it('rejects what configparser rejects, naming the line and the fix', () => {
    throwsCode(
      () => parseIni('[a]\nx=1\n[a]\ny=2\n', 'f.ini'),
      'SLUICE_CONFIG_FILE',
      'f.ini, line 3',
      '[a]',
      'twice',
    );
    throwsCode(
      () => parseIni('[a]\nx=1\nX = 2\n', 'f.ini'),
      'SLUICE_CONFIG_FILE',
      'line 3',
      '"x" appears twice',
    );
    throwsCode(
      () => parseIni('x = 1\n[a]\n', 'f.ini'),
      'SLUICE_CONFIG_FILE',
      'line 1',
      'before any [section]',
    );
    throwsCode(() => parseIni('[a]\njust words\n', 'f.ini'), 'SLUICE_CONFIG_FILE', 'line 2', 'key = value');
    throwsCode(() => parseIni('[a]\n= value\n', 'f.ini'), 'SLUICE_CONFIG_FILE', 'line 2');
  });

  it('interpolation errors name the key and say how to write a literal %', () => {
    const doc = parseIni('[a]\nlone = 50%\nmissing = %(nope)s\nbad = %(x\nloop = %(loop)s\n', 'f.ini');
    throwsCode(
      () => getSection(doc, 'a', { env: {}, drop: ['missing', 'bad', 'loop'] }),
      'SLUICE_CONFIG_INVALID',
      'lone',
      '%%',
    );
    throwsCode(
      () => getSection(doc, 'a', { env: {}, drop: ['lone', 'bad', 'loop'] }),
      'SLUICE_CONFIG_INVALID',
      'missing',
      '"nope"',
    );
    throwsCode(
      () => getSection(doc, 'a', { env: {}, drop: ['lone', 'missing', 'loop'] }),
      'SLUICE_CONFIG_INVALID',
      'bad',
      '%(other_key)s',
    );
    throwsCode(
      () => getSection(doc, 'a', { env: {}, drop: ['lone', 'missing', 'bad'] }),
      'SLUICE_CONFIG_INVALID',
      'loop',
    );
  });

  it('an unknown section lists the sections that exist', () => {
    throwsCode(
      () => getSection(parseIni('[a]\n[b]\n', 'f.ini'), 'broker'),
      'SLUICE_CONFIG_INVALID',
      '[broker]',
      '[a], [b]',
    );
  });
});

describe('environment expansion (OpenMSIStream rule)', () => {
  it('expands $VAR and {VAR} forms only in values that start with $', () => {
    const env = { A: 'x', B: 'y' };
    assert.equal(expandEnv('$A', 'k', env), 'x');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${A} is the input under test
    assert.equal(expandEnv('${A}:$B/z', 'k', env), 'x:y/z');
    assert.equal(expandEnv('pre-$A', 'k', env), 'pre-$A');
    assert.equal(expandEnv('', 'k', env), '');
  });

  it('an unset variable is an error naming it', () => {
    throwsCode(
      () => expandEnv('$NOPE_NOT_SET', 'f: [broker] bootstrap.servers', {}),
      'SLUICE_CONFIG_INVALID',
      'NOPE_NOT_SET',
      'bootstrap.servers',
      'export',
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${GONE} is the input under test
    throwsCode(() => expandEnv('${A}/${GONE}', 'k', { A: 'x' }), 'SLUICE_CONFIG_INVALID', 'GONE');
  });
});

describe('[broker] → Kafka transport options', () => {
  it('maps plaintext', () => {
    assert.deepEqual(brokerSectionToKafkaOptions({ 'bootstrap.servers': 'a:1, b:2' }), {
      bootstrapServers: ['a:1', 'b:2'],
    });
  });

  it('maps SASL_SSL with PLAIN and a CA file', () => {
    const opts = brokerSectionToKafkaOptions(
      {
        'bootstrap.servers': 'a:9093',
        'security.protocol': 'sasl_ssl',
        'sasl.mechanism': 'PLAIN',
        'sasl.username': 'u',
        'sasl.password': 'p',
        'ssl.ca.location': '/ca.pem',
        'client.id': 'me',
      },
      { readFile: (p) => Buffer.from(`pem:${p}`) },
    );
    assert.deepEqual(opts, {
      bootstrapServers: ['a:9093'],
      clientId: 'me',
      sasl: { mechanism: 'PLAIN', username: 'u', password: 'p' },
      tls: { ca: Buffer.from('pem:/ca.pem') },
    });
  });

  it('SSL without a CA uses the system CAs; librdkafka spelling sasl.mechanisms is accepted', () => {
    assert.deepEqual(
      brokerSectionToKafkaOptions({ 'bootstrap.servers': 'a:1', 'security.protocol': 'SSL' }).tls,
      true,
    );
    const o = brokerSectionToKafkaOptions({
      'bootstrap.servers': 'a:1',
      'security.protocol': 'SASL_PLAINTEXT',
      'sasl.mechanisms': 'scram-sha-512',
      'sasl.username': 'u',
      'sasl.password': 'p',
    });
    assert.equal(o.sasl?.mechanism, 'SCRAM-SHA-512');
    assert.equal(o.tls, undefined);
  });

  it('unknown keys and bad values name the key and the fix', () => {
    throwsCode(
      () => brokerSectionToKafkaOptions({ 'bootstrap.servers': 'a:1', 'linger.ms': '5' }),
      'SLUICE_CONFIG_INVALID',
      'linger.ms',
      'Supported [broker] keys',
    );
    throwsCode(
      () => brokerSectionToKafkaOptions({}),
      'SLUICE_CONFIG_INVALID',
      'bootstrap.servers',
      'is missing',
    );
    throwsCode(
      () => brokerSectionToKafkaOptions({ 'bootstrap.servers': 'a:1', 'security.protocol': 'TLS' }),
      'SLUICE_CONFIG_INVALID',
      'security.protocol',
      'SASL_SSL',
    );
    throwsCode(
      () =>
        brokerSectionToKafkaOptions({
          'bootstrap.servers': 'a:1',
          'security.protocol': 'SASL_SSL',
          'sasl.username': 'u',
          'sasl.password': 'p',
        }),
      'SLUICE_CONFIG_INVALID',
      'sasl.mechanism',
      'is missing',
    );
    throwsCode(
      () =>
        brokerSectionToKafkaOptions({
          'bootstrap.servers': 'a:1',
          'security.protocol': 'SASL_SSL',
          'sasl.mechanism': 'GSSAPI',
        }),
      'SLUICE_CONFIG_INVALID',
      'GSSAPI',
      'not supported',
    );
    throwsCode(
      () =>
        brokerSectionToKafkaOptions({
          'bootstrap.servers': 'a:1',
          'security.protocol': 'SASL_SSL',
          'sasl.mechanism': 'PLAIN',
          'sasl.username': 'u',
        }),
      'SLUICE_CONFIG_INVALID',
      'sasl.password',
    );
    throwsCode(
      () => brokerSectionToKafkaOptions({ 'bootstrap.servers': 'a:1', 'sasl.username': 'u' }),
      'SLUICE_CONFIG_INVALID',
      'sasl.username',
      'security.protocol = SASL_SSL',
    );
    throwsCode(
      () => brokerSectionToKafkaOptions({ 'bootstrap.servers': 'a:1', 'ssl.ca.location': '/x' }),
      'SLUICE_CONFIG_INVALID',
      'ssl.ca.location',
      'security.protocol = SSL',
    );
    throwsCode(
      () =>
        brokerSectionToKafkaOptions(
          { 'bootstrap.servers': 'a:1', 'security.protocol': 'SSL', 'ssl.ca.location': '/missing.pem' },
          {
            readFile: () => {
              throw new Error('ENOENT');
            },
          },
        ),
      'SLUICE_CONFIG_INVALID',
      '/missing.pem',
      'PEM file',
    );
    throwsCode(
      () => brokerSectionToKafkaOptions({ 'bootstrap.servers': 'a:1', 'client.id': 'has space' }),
      'SLUICE_CONFIG_INVALID',
      'client.id',
    );
  });
});

describe('config files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ini-'));
  writeFileSync(
    join(dir, 'local_broker_test.config'),
    '[DEFAULT]\nnode_id = n1\n[broker]\nbootstrap.servers = $LOCAL_KAFKA_BROKER_BOOTSTRAP_SERVERS\n[producer]\nlinger.ms = 100\n',
  );

  it('finds NAME.config in $OPENMSISTREAM_CONFIG_FILE_DIR and maps [broker], dropping node_id', () => {
    const env = {
      OPENMSISTREAM_CONFIG_FILE_DIR: dir,
      LOCAL_KAFKA_BROKER_BOOTSTRAP_SERVERS: '127.0.0.1:19092',
    };
    const config = loadOpenMsiConfig('local_broker_test', { env, cwd: tmpdir() });
    assert.equal(config.path, join(dir, 'local_broker_test.config'));
    assert.deepEqual(kafkaOptionsFromConfig(config), { bootstrapServers: ['127.0.0.1:19092'] });
    assert.deepEqual(config.producer, { 'bootstrap.servers': '127.0.0.1:19092', 'linger.ms': '100' });
    assert.equal(config.consumer, undefined);
  });

  it('a path wins over the directory; a missing file names where it looked', () => {
    assert.equal(
      resolveConfigPath(join(dir, 'local_broker_test.config'), { env: {} }),
      join(dir, 'local_broker_test.config'),
    );
    throwsCode(
      () => resolveConfigPath('nowhere', { env: { OPENMSISTREAM_CONFIG_FILE_DIR: dir }, cwd: dir }),
      'SLUICE_CONFIG_FILE',
      'nowhere.config',
      'OPENMSISTREAM_CONFIG_FILE_DIR',
    );
  });

  it('an unset variable in the file fails when loading, naming it', () => {
    throwsCode(
      () => loadOpenMsiConfig(join(dir, 'local_broker_test.config'), { env: {} }),
      'SLUICE_CONFIG_INVALID',
      'LOCAL_KAFKA_BROKER_BOOTSTRAP_SERVERS',
    );
  });
});
