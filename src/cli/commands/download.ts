import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { DataFileDownloadDirectory, DEFAULT_TOPIC } from '../../files/download-directory.ts';
import { gracefulShutdown } from '../../runtime/shutdown.ts';
import { addConnectionOptions, type GlobalOptions, intArg, loggerFor, withTransport } from '../common.ts';

interface DownloadDirOptions extends GlobalOptions {
  topic_name: string;
  consumer_group_id?: string;
  download_regex?: RegExp;
  n_threads: number;
  update_seconds: number;
  heartbeat_topic_name?: string;
  heartbeat_program_id?: string;
  heartbeat_interval_secs: number;
}

export function regexArg(value: string): RegExp {
  try {
    return new RegExp(value);
  } catch (err) {
    throw new InvalidArgumentError(`not a valid regular expression (${String(err)}).`);
  }
}

export function registerDownloadCommand(program: Command): void {
  addConnectionOptions(
    program
      .command('download-dir <output_dir>')
      .description(
        'rebuild every file streamed to a topic under OUTPUT_DIR (OpenMSIStream DataFileDownloadDirectory)',
      )
      .option('--topic_name <topic>', 'topic the file chunks are read from', DEFAULT_TOPIC)
      .option(
        '--consumer_group_id <id>',
        'consumer group; default: one derived from OUTPUT_DIR, so a restart resumes; create_new: a fresh group per run (re-reads the topic)',
      )
      .option(
        '--download_regex <regex>',
        'only rebuild files whose path relative to the upload root matches',
        regexArg,
      )
      .option(
        '--n_threads <n>',
        'accepted for OpenMSIStream compatibility; sluice rebuilds with one consumer per process',
        intArg('--n_threads', 1),
        2,
      )
      .option('--update_seconds <s>', 'log a progress line this often', intArg('--update_seconds', 1), 300)
      .option('--heartbeat_topic_name <topic>', 'send OpenMSIStream heartbeats to this topic')
      .option('--heartbeat_program_id <id>', 'heartbeat key prefix (default: stable per output directory)')
      .option(
        '--heartbeat_interval_secs <s>',
        'seconds between heartbeats',
        intArg('--heartbeat_interval_secs', 1),
        900,
      )
      .addHelpText(
        'after',
        `
Files appear under OUTPUT_DIR only once complete and verified (SHA-512); chunks may arrive in any order, over any
number of partitions. Offsets are committed only below the oldest chunk of an unfinished file, so after a crash
(even kill -9) a restart with the same group completes every file. Messages that cannot be used (bad hash,
undecodable, a path leaving OUTPUT_DIR) are logged and kept in OUTPUT_DIR/LOGS/quarantine/. Ctrl-C stops cleanly.

Examples:
  $ sluice download-dir ./out                                  # embedded broker, topic "test"
  $ sluice download-dir ./out --topic_name xrd --download_regex '\\.dat$'
  $ sluice download-dir /data/rebuilt --config prod.config --consumer_group_id lab-rebuild`,
      ),
  ).action(async (outputDir: string, o: DownloadDirOptions) => {
    const log = loggerFor('DataFileDownloadDirectory', o);
    const { signal, dispose } = gracefulShutdown({ logger: log });
    try {
      await withTransport(o, async (transport) => {
        const dl = new DataFileDownloadDirectory({
          transport,
          outputDir,
          topic: o.topic_name,
          groupId: o.consumer_group_id,
          downloadRegex: o.download_regex,
          logger: log,
          heartbeatTopic: o.heartbeat_topic_name,
          heartbeatProgramId: o.heartbeat_program_id,
          heartbeatIntervalSecs: o.heartbeat_interval_secs,
          autoCreateTopic: transport.kind === 'embedded',
        });
        const progress = setInterval(() => {
          const s = dl.summary;
          log.info(
            { ...s },
            `progress: ${s.filesCompleted} file(s) rebuilt, ${s.messagesRead} message(s) read`,
          );
        }, o.update_seconds * 1000);
        progress.unref();
        try {
          await dl.run(signal);
        } finally {
          clearInterval(progress);
        }
      });
    } finally {
      dispose();
    }
  });
}
