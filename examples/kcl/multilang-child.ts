/**
 * The sample processor as a MultiLangDaemon child. In the daemon's properties file:
 *
 *   executableName = node --import tsx examples/kcl/multilang-child.ts
 *
 * (from the repository root; the daemon splits executableName on whitespace, so the path must not contain
 * spaces). Speaks the JSON-lines protocol on stdin/stdout and exits when the daemon closes stdin.
 */
import { runKCLProcess } from '../../src/records/kcl/index.ts';
import { SampleRecordProcessor } from './sample-processor.ts';

await runKCLProcess(new SampleRecordProcessor());
