import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseBrokerSpec } from '../../../../src/transport/open.ts';

describe('--broker amqp://', () => {
  it('selects the RabbitMQ transport for amqp:// and amqps:// URLs, keeping the URL whole', () => {
    assert.deepEqual(parseBrokerSpec('amqp://guest:guest@127.0.0.1:5672'), {
      kind: 'rabbitmq',
      url: 'amqp://guest:guest@127.0.0.1:5672',
    });
    assert.deepEqual(parseBrokerSpec(' amqps://u:p@mq.example:5671/prod '), {
      kind: 'rabbitmq',
      url: 'amqps://u:p@mq.example:5671/prod',
    });
  });

  it('leaves Kafka and embedded specs as they were', () => {
    assert.equal(parseBrokerSpec('127.0.0.1:9092').kind, 'kafka');
    assert.equal(parseBrokerSpec('file:./x.db').kind, 'embedded');
  });
});
