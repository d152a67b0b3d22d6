import { EmbeddedTransport, type EmbeddedTransportOptions } from './embedded.ts';

export { EmbeddedConsumer } from './consumer.ts';
export {
  DEFAULT_EMBEDDED_PATH,
  EmbeddedProducer,
  EmbeddedTransport,
  type EmbeddedTransportOptions,
} from './embedded.ts';

/** Opens (creating if needed) an embedded broker file. */
export async function openEmbeddedTransport(
  options: EmbeddedTransportOptions = {},
): Promise<EmbeddedTransport> {
  return new EmbeddedTransport(options);
}
