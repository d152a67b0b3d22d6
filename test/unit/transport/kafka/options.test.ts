import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../../src/errors.ts';
import {
  parseBootstrapServers,
  parseBroker,
  resolveKafkaOptions,
} from '../../../../src/transport/kafka/index.ts';

function throwsCode(fn: () => unknown, code: string, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isSluiceError(err, code as never), `expected ${code}, got ${String(err)}`);
    for (const f of fragments)
      assert.ok((err as Error).message.includes(f), `"${(err as Error).message}" lacks "${f}"`);
    return true;
  });
}

describe('Kafka bootstrap addresses', () => {
  it('parses host:port, IPv6, listener prefixes and the default port', () => {
    assert.equal(parseBroker('127.0.0.1:9092'), '127.0.0.1:9092');
    assert.equal(parseBroker(' broker.example '), 'broker.example:9092');
    assert.equal(parseBroker('[::1]:19092'), '[::1]:19092');
    assert.equal(parseBroker('SASL_SSL://b1:9093'), 'b1:9093');
    assert.deepEqual(parseBootstrapServers('a:1, b:2,,'), ['a:1', 'b:2']);
    assert.deepEqual(parseBootstrapServers(['a:1', 'b']), ['a:1', 'b:9092']);
  });

  it('rejects bad addresses with the expected form', () => {
    throwsCode(() => parseBroker('a:b'), 'SLUICE_BROKER_URL', '"a:b"', 'host:port');
    throwsCode(() => parseBroker('a:70000'), 'SLUICE_BROKER_URL', '70000');
    throwsCode(() => parseBroker('::1:9092'), 'SLUICE_BROKER_URL', 'brackets');
    throwsCode(() => parseBroker('[::1'), 'SLUICE_BROKER_URL', ']');
    throwsCode(() => parseBroker(':9092'), 'SLUICE_BROKER_URL', 'host is missing');
    throwsCode(() => parseBootstrapServers(' , '), 'SLUICE_BROKER_URL', 'bootstrapServers');
  });
});

describe('Kafka transport options', () => {
  it('fills in defaults', () => {
    const o = resolveKafkaOptions({ bootstrapServers: '127.0.0.1:9092' });
    assert.deepEqual(o.brokers, ['127.0.0.1:9092']);
    assert.equal(o.clientId, 'sluice');
    assert.equal(o.connectTimeoutMs, 10_000);
    assert.equal(o.defaultPartitions, 1);
    assert.equal(o.replicationFactor, -1);
    assert.equal(o.maxBatchBytes, 1_048_576);
    assert.equal(o.sasl, undefined);
    assert.equal(o.tls, undefined);
  });

  it('passes SASL and TLS through', () => {
    const o = resolveKafkaOptions({
      bootstrapServers: ['b:9093'],
      sasl: { mechanism: 'SCRAM-SHA-256', username: 'u', password: 'p' },
      tls: { ca: 'PEM' },
    });
    assert.deepEqual(o.sasl, { mechanism: 'SCRAM-SHA-256', username: 'u', password: 'p' });
    assert.deepEqual(o.tls, { ca: 'PEM' });
    assert.deepEqual(resolveKafkaOptions({ bootstrapServers: 'b', tls: true }).tls, {});
  });

  it('rejects unknown and bad options, naming them', () => {
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', brokers: 'x' } as never),
      'SLUICE_CONFIG_INVALID',
      '"brokers"',
      'Known options',
    );
    throwsCode(() => resolveKafkaOptions({} as never), 'SLUICE_BROKER_URL', 'bootstrapServers is missing');
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', connectTimeoutMs: 0 }),
      'SLUICE_CONFIG_INVALID',
      'connectTimeoutMs',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', defaultPartitions: 1.5 }),
      'SLUICE_CONFIG_INVALID',
      'defaultPartitions',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', replicationFactor: 0 }),
      'SLUICE_CONFIG_INVALID',
      'replicationFactor',
      '-1',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', clientId: 'a b' }),
      'SLUICE_CONFIG_INVALID',
      'clientId',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', compression: 'brotli' as never }),
      'SLUICE_CONFIG_INVALID',
      'compression',
      'zstd',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', sasl: { mechanism: 'GSSAPI' as never } }),
      'SLUICE_CONFIG_INVALID',
      'sasl.mechanism',
      'PLAIN',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', sasl: { mechanism: 'PLAIN', username: 'u' } }),
      'SLUICE_CONFIG_INVALID',
      'sasl.password',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', sasl: { mechanism: 'OAUTHBEARER' } }),
      'SLUICE_CONFIG_INVALID',
      'sasl.token',
    );
    throwsCode(
      () => resolveKafkaOptions({ bootstrapServers: 'a:1', tls: 'yes' as never }),
      'SLUICE_CONFIG_INVALID',
      'tls',
    );
  });
});
