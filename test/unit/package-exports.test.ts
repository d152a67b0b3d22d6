import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, { types: string; default: string }>;
};

describe('package exports', () => {
  it('every documented entry point loads by its package name (as the README imports them)', async () => {
    const loaded: string[] = [];
    for (const subpath of Object.keys(pkg.exports)) {
      const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
      const mod = (await import(specifier)) as Record<string, unknown>;
      assert.ok(Object.keys(mod).length > 0, `${specifier} exports nothing`);
      loaded.push(specifier);
    }
    assert.ok(loaded.includes('sluice/processing') && loaded.includes('sluice/transport'));
  });

  it('the README example names resolve', async () => {
    const processing = (await import('sluice/processing')) as Record<string, unknown>;
    for (const name of [
      'DataFileStreamProcessor',
      'DataFileStreamReproducer',
      'MetadataJSONReproducer',
      'ReproducerMessage',
    ]) {
      assert.equal(typeof processing[name], 'function', name);
    }
    assert.equal(
      typeof (processing.Runnable as { runFromCommandLine?: unknown }).runFromCommandLine,
      'function',
    );
    const transport = (await import('sluice/transport')) as Record<string, unknown>;
    assert.equal(typeof transport.openTransport, 'function');
  });
});
