import { type Command, CommanderError } from 'commander';
import { SluiceError } from '../../errors.ts';

/**
 * The arguments given after this command's name, verbatim (`--` included): commander would otherwise parse
 * options meant for the program class.
 */
export function argsAfterCommand(cmd: Command): string[] {
  // commander keeps the parsed argv in `rawArgs` (not in its typings)
  const raw = (cmd.parent as unknown as { rawArgs?: string[] } | null)?.rawArgs ?? [];
  const i = raw.indexOf(cmd.name());
  return i < 0 ? [...cmd.args] : raw.slice(i + 1);
}

/** Ends the command with a program's exit code (already reported by the program), without printing more. */
export function exitWith(code: number): void {
  if (code !== 0) throw new CommanderError(code, 'sluice.programExit', '');
}

/** Splits `[--class NAME] FILE [program args…]`: `run`'s own options come before the file only. */
export function splitRunArgs(args: readonly string[]): {
  className?: string;
  help: boolean;
  module?: string;
  rest: string[];
} {
  let className: string | undefined;
  let help = false;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--class') {
      className = args[++i];
      if (className === undefined) throw new SluiceError('SLUICE_USAGE', '--class needs a class name.');
    } else if (a.startsWith('--class=')) className = a.slice('--class='.length);
    else if (a === '-h' || a === '--help') help = true;
    else if (a === '--') {
      i++;
      break;
    } else break;
  }
  return { className, help, module: args[i], rest: args.slice(i + 1) };
}

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .usage('[--class NAME] FILE [program options]')
    .description(
      'run your own processor or reproducer (a .ts or .js file exporting a DataFileStreamProcessor or ' +
        'DataFileStreamReproducer subclass) as a program, like `python -m` runs an OpenMSIStream class',
    )
    .argument('[args...]')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .addHelpText(
      'after',
      `
Options:
  --class NAME   the class to run when FILE exports several (default: the default export, or the only one)
  -h, --help     this help; FILE --help lists the program's own options

FILE is imported (TypeScript works as is). Its class gets the inherited options (--broker, --config,
--topic_name, --consumer_group_id, --output_dir, --mode, --n_threads or --n_consumer_threads/--n_producer_threads,
--download_regex, heartbeat, log topic and logger options; reproducers also --producer_topic_name and
--exactly_once) plus whatever its static getCommandLineArguments() adds. It runs until Ctrl-C, SIGTERM, or q on
stdin (c logs the counters); in-flight files finish or are left for a restart, which picks them up.

Examples:
  $ sluice run examples/processors/csv-metadata-reproducer.ts --topic_name csv-chunks --producer_topic_name csv-metadata
  $ sluice run ./my-processor.ts --help
  $ sluice run --class HashReproducer ./reproducers.ts --config prod.config --topic_name raw --producer_topic_name hashes`,
    )
    .action(async (_files: string[], _o: unknown, cmd: Command) => {
      const { className, help, module, rest } = splitRunArgs(argsAfterCommand(cmd));
      if (module === undefined) {
        cmd.outputHelp(help ? undefined : { error: true });
        exitWith(help ? 0 : 2);
        return;
      }
      const { loadProgramClass, runFromCommandLine } = await import('../../processing/runnable.ts');
      const cls = await loadProgramClass(module, className);
      exitWith(await runFromCommandLine(cls, rest, { programName: `sluice run ${module}` }));
    });
}
