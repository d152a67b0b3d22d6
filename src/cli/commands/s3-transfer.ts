import type { Command } from 'commander';
import { argsAfterCommand, exitWith } from './run.ts';

export function registerS3TransferCommand(program: Command): void {
  program
    .command('s3-transfer')
    .usage('BUCKET [options]')
    .description(
      'upload every file rebuilt from a topic to an S3 bucket (OpenMSIStream S3TransferStreamProcessor; --help for its options)',
    )
    .argument('[args...]')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (_a: string[], _o: unknown, cmd: Command) => {
      // the AWS SDK is loaded only when this command runs
      const { S3TransferStreamProcessor } = await import('../../processing/s3-transfer-stream-processor.ts');
      exitWith(
        await S3TransferStreamProcessor.runFromCommandLine(argsAfterCommand(cmd), {
          programName: 'sluice s3-transfer',
          description:
            'Uploads every file rebuilt from --topic_name to BUCKET as <topic>/<subdir>/<filename>: one PutObject, or a ' +
            'multipart upload from --multipart_threshold_mb on (read from disk part by part in --mode disk). Every ' +
            'request carries Content-MD5, ETags are checked against what was sent and a HeadObject checks the stored ' +
            'size; a failed or unverified upload fails the file, which is uploaded again after a restart.',
          helpText: `
Connection: the [s3] section of --config (access_key_id, secret_key_id, endpoint_url, region; values starting
with $ come from the environment), overridden by the flags above; without keys, the AWS default credential chain
(AWS_ACCESS_KEY_ID, profiles, roles). A config file without [broker] only supplies [s3]: the chunks are then read
from --broker (default: the embedded broker).

Examples:
  $ sluice s3-transfer lab-data --topic_name raw --config osn.config
  $ sluice s3-transfer lab-data --topic_name raw --endpoint_url http://127.0.0.1:4568 --mode disk --output_dir /scratch/s3`,
        }),
      );
    });
}
