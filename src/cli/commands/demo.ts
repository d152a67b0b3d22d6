import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DataFileDownloadDirectory } from '../../files/download-directory.ts';
import type { FileOutcome } from '../../files/stream-handler.ts';
import { DataFileUploadDirectory } from '../../files/upload-directory.ts';
import { addConnectionOptions, type GlobalOptions, loggerFor, table, withTransport } from '../common.ts';

/** Instrument-like sample files: a CSV log, a binary spectrum, a nested run directory, an empty file, a large image. */
export function writeSampleFiles(dir: string): Array<{ path: string; bytes: number }> {
  const files: Array<[string, Buffer]> = [];
  const rows = ['time_s,temperature_c,pressure_kpa'];
  for (let i = 0; i < 2000; i++)
    rows.push(`${i * 0.5},${(21 + Math.sin(i / 50)).toFixed(3)},${(101.3 + Math.cos(i / 70)).toFixed(3)}`);
  files.push(['furnace/run-001/sensors.csv', Buffer.from(`${rows.join('\n')}\n`)]);
  const spectrum = Buffer.alloc(8 * 4096);
  for (let i = 0; i < 4096; i++) spectrum.writeDoubleLE(Math.exp(-((i - 2048) ** 2) / 20000), i * 8);
  files.push(['xrd/scan 42/spectrum.bin', spectrum]);
  files.push(['xrd/scan 42/notes – ünïcødé.txt', Buffer.from('sample: Ti-6Al-4V, 2θ 20°–80°\n')]);
  files.push(['furnace/run-001/EMPTY.marker', Buffer.alloc(0)]);
  // a 3 MiB "image": several chunks of 512 KiB
  const image = Buffer.alloc(3 * 1024 * 1024 + 1234);
  let x = 2463534242;
  for (let i = 0; i < image.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    image[i] = x & 0xff;
  }
  files.push(['microscope/frame-0001.raw', image]);
  return files.map(([rel, data]) => {
    const path = join(dir, rel);
    mkdirSync(resolve(path, '..'), { recursive: true });
    writeFileSync(path, data);
    return { path: rel, bytes: data.length };
  });
}

const sha = (b: Buffer): string => createHash('sha512').update(b).digest('hex');

export function registerDemoCommand(program: Command): void {
  addConnectionOptions(
    program
      .command('demo')
      .description(
        'a first run: stream sample instrument files through the broker and rebuild them elsewhere',
      )
      .option('--dir <dir>', 'where to put the demo input and output directories', './sluice-demo')
      .addHelpText(
        'after',
        `
Writes a few sample files into DIR/in, uploads them as chunks to the topic "sluice-demo", rebuilds them in
DIR/out with a download directory, checks every byte, and prints what happened. Nothing else is needed: the
broker is the embedded one in ./.sluice/broker.db unless --broker says otherwise.

Example:
  $ sluice demo
  $ sluice demo --broker kafka://127.0.0.1:9092 --dir /tmp/demo`,
      ),
  ).action(async (o: GlobalOptions & { dir: string }) => {
    const log = loggerFor('demo', o);
    const root = resolve(o.dir);
    const input = join(root, 'in');
    const output = join(root, 'out');
    rmSync(root, { recursive: true, force: true });
    mkdirSync(input, { recursive: true });
    const samples = writeSampleFiles(input);
    log.info({ dir: input }, `wrote ${samples.length} sample files to ${input}`);
    await withTransport(o, async (transport) => {
      const topic = 'sluice-demo';
      await transport.createTopic({ name: topic, partitions: 3 }, { ifNotExists: true });
      const upload = new DataFileUploadDirectory({
        dir: input,
        transport,
        topic,
        uploadExisting: true,
        lagTimeSecs: 0.2,
        logger: log.child({ name: 'upload-dir' }),
      });
      const download = new DataFileDownloadDirectory({
        transport,
        outputDir: output,
        topic,
        groupId: 'create_new',
        logger: log.child({ name: 'download-dir' }),
      });
      const seen = new Map<string, FileOutcome>();
      const stop = new AbortController();
      download.on('file', (f: FileOutcome) => {
        seen.set(f.relativeFilepath, f);
        if (samples.every((s) => seen.has(s.path))) stop.abort();
      });
      const limit = setTimeout(() => stop.abort(), 120_000);
      limit.unref();
      const rebuilding = download.run(stop.signal);
      await upload.start();
      await rebuilding;
      clearTimeout(limit);
      await upload.stop();
      const rows: Array<Array<string | number>> = [['FILE', 'BYTES', 'REBUILT', 'IDENTICAL']];
      let ok = 0;
      for (const s of samples) {
        const f = seen.get(s.path);
        let same = 'no';
        try {
          same =
            f?.status === 'completed' &&
            sha(readFileSync(join(output, s.path))) === sha(readFileSync(join(input, s.path)))
              ? 'yes'
              : 'no';
        } catch {
          same = 'missing';
        }
        if (same === 'yes') ok += 1;
        rows.push([s.path, s.bytes, f?.status ?? 'not seen', same]);
      }
      process.stdout.write(table(rows));
      process.stdout.write(
        `\n${ok}/${samples.length} files streamed through the ${transport.kind} broker and rebuilt byte-identical in ${output}\n` +
          `\nThe same with two terminals:\n  ./sluice upload-dir ${input} --topic_name ${topic}\n  ./sluice download-dir ${join(root, 'out2')} --topic_name ${topic}\n` +
          `then copy files into ${input} and watch them appear in ${join(root, 'out2')}.\n`,
      );
      if (ok !== samples.length) process.exitCode = 1;
    });
  });
}
