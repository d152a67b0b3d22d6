#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { registerConsumeCommand } from './commands/consume.ts';
import { registerDemoCommand } from './commands/demo.ts';
import { registerDownloadCommand } from './commands/download.ts';
import { registerGroupCommands } from './commands/groups.ts';
import { registerMetadataExampleCommand } from './commands/metadata-example.ts';
import { registerProduceCommand } from './commands/produce.ts';
import { registerRunCommand } from './commands/run.ts';
import { registerS3TransferCommand } from './commands/s3-transfer.ts';
import { registerTopicCommands } from './commands/topics.ts';
import { registerUploadCommands } from './commands/upload.ts';
import { reportError } from './common.ts';

export function buildProgram(): Command {
  const program = new Command('sluice')
    .description(
      'Stream data files and records through Kafka or an embedded broker (one SQLite file, no server).\n' +
        'Every command works the same on both: pick one with --broker (default file:./.sluice/broker.db).',
    )
    .version('0.1.0')
    // options after a subcommand belong to it (`sluice run FILE --version` reaches the program)
    .enablePositionalOptions()
    .showHelpAfterError('(add --help for usage and examples)')
    .addHelpText(
      'after',
      `
Getting started:
  $ printf 'hello\\nworld\\n' | sluice produce greetings --auto-create
  $ sluice consume greetings -e
  $ sluice topics describe greetings

Point any command at Kafka with --broker kafka://HOST:PORT (or $SLUICE_BROKER), or at an
OpenMSIStream config file with --config FILE.`,
    );
  registerTopicCommands(program);
  registerProduceCommand(program);
  registerConsumeCommand(program);
  registerGroupCommands(program);
  registerDemoCommand(program);
  registerUploadCommands(program);
  registerDownloadCommand(program);
  registerRunCommand(program);
  registerS3TransferCommand(program);
  registerMetadataExampleCommand(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  for (const c of program.commands) {
    c.exitOverride();
    for (const sub of c.commands) sub.exitOverride();
  }
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    return reportError(err);
  }
}

if (import.meta.main) {
  process.exitCode = await main();
}
