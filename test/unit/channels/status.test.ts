import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ChannelStatus,
  ChannelStatusMonitor,
  driveStep,
  encodeStatusMessage,
  HEALTH_PATIENCE_MS,
  parseStatusMessage,
  pythonJson,
} from '../../../src/channels/index.ts';
import { isSluiceError } from '../../../src/errors.ts';

const base = {
  channelName: 'op_b.input_port',
  channelContextName: 'op_a.output_port',
  channelGroupName: null,
  channelGroupIndex: 0,
  payload: null,
};
const msg = (status: ChannelStatus, timestamp: number) => ({ ...base, status, timestamp });

describe('channel status protocol', () => {
  it('encodes like Python json.dumps: key order, ", " and ": " separators, non-ASCII escaped', () => {
    assert.equal(
      encodeStatusMessage({ ...msg('HealthCheck', 1714816000000), payload: { sentRecordCount: 42 } }),
      '{"channel_name": "op_b.input_port", "channel_context_name": "op_a.output_port", "channel_group_name": null, ' +
        '"channel_group_index": 0, "status": "HealthCheck", "payload": {"sentRecordCount": 42}, "timestamp": 1714816000000}',
    );
    assert.equal(pythonJson({ a: 'é✓', b: [1, 2.5, true] }), '{"a": "\\u00e9\\u2713", "b": [1, 2.5, true]}');
  });

  it('parses what it encodes, a payload given as a string, and rejects unknown statuses clearly', () => {
    const m = { ...msg('Started', 5), payload: { x: 1 } };
    assert.deepEqual(parseStatusMessage(encodeStatusMessage(m)), m);
    assert.deepEqual(
      parseStatusMessage({
        channel_name: 'a',
        channel_context_name: 'b',
        channel_group_name: 'g',
        channel_group_index: 2,
        status: 'Stopped',
        payload: '{"k": 2}',
        timestamp: 7,
      }).payload,
      { k: 2 },
    );
    assert.throws(
      () =>
        parseStatusMessage(
          '{"channel_name": "a", "channel_context_name": "b", "status": "Running", "timestamp": 1}',
        ),
      (e: unknown) => isSluiceError(e, 'SLUICE_CHANNEL_STATUS') && /unknown status "Running"/.test(e.message),
    );
    assert.throws(
      () => parseStatusMessage('not json'),
      (e: unknown) => isSluiceError(e, 'SLUICE_CHANNEL_STATUS'),
    );
    assert.equal(Object.keys(ChannelStatus).length, 8);
  });

  it('monitor: only state statuses change the state, never backwards in time; Error sticks until Opened/Started', () => {
    const mon = new ChannelStatusMonitor(msg('Opened', 100), 100);
    mon.update(msg('Opened', 100), 100);
    mon.update(msg('Started', 200), 200);
    mon.update(msg('HealthCheck', 300), 300);
    assert.equal(mon.status, 'Started', 'HealthCheck does not change the state');
    assert.equal(mon.lastUpdate, 300);
    assert.match(mon.update(msg('Stopped', 150), 300) ?? '', /older/, 'an older message warns');
    assert.equal(mon.status, 'Started', 'an older Stopped does not win');
    mon.update(msg('Error', 400), 400);
    mon.update(msg('Stopped', 500), 500);
    assert.equal(mon.status, 'Error', 'Error stays through Stopped');
    mon.update(msg('Started', 600), 600);
    assert.equal(mon.status, 'Started', 'Started clears Error');
    mon.update(msg('Acknowledged', 700), 700);
    assert.equal(mon.acknowledged, true);
    assert.equal(mon.seen.get('Error'), 400);
  });

  it('monitor: healthy within 120 s of the last message (sender clock); finished when stopped, closed or silent', () => {
    const mon = new ChannelStatusMonitor(msg('Started', 1000), 1000);
    mon.update(msg('Started', 1000), 1000);
    assert.equal(mon.isHealthy(1000 + HEALTH_PATIENCE_MS - 1), true);
    assert.equal(mon.isHealthy(1000 + HEALTH_PATIENCE_MS), false);
    assert.equal(mon.isFinished(2000), false);
    assert.equal(mon.isFinished(1000 + HEALTH_PATIENCE_MS), true, 'a silent writer counts as finished');
    mon.update(msg('Closed', 3000), 3000);
    assert.equal(mon.isFinished(3000), true);
    assert.match(mon.update(msg('HealthCheck', 20_000), 3000) ?? '', /future/, 'clock skew is reported');
  });

  it('driveStep repeats a step until true, rejects non-boolean results and times out', async () => {
    let n = 0;
    await driveStep('count', () => ++n === 3, { intervalMs: 1 });
    assert.equal(n, 3);
    await assert.rejects(
      driveStep('bad', () => 'yes' as unknown as boolean),
      (e: unknown) => isSluiceError(e, 'SLUICE_CHANNEL_STATE') && /returned "yes"/.test(e.message),
    );
    await assert.rejects(
      driveStep('never', () => false, { timeoutMs: 20, intervalMs: 5 }),
      (e: unknown) => isSluiceError(e, 'SLUICE_TIMEOUT'),
    );
  });
});
