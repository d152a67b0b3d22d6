/**
 * How channel records become message bodies and back:
 * - `bytes`: Buffers (strings are sent as UTF-8) and back as Buffers;
 * - `json`: any JSON value, UTF-8 JSON text;
 * - `avro`: plain Avro binary of one datum per message (no container, header or schema-registry framing), exactly
 *   what pypz's `avro` 1.10.1 `DatumWriter` produces, decoded into plain objects.
 *
 * `encodeBatch` encodes the whole batch before anything is sent: one invalid record fails the batch with a readable
 * validation error (pypz silently drops a record its validator accepts but its encoder rejects; sluice never does).
 */
import avro from 'avsc';
import { SluiceError } from '../errors.ts';

export type RecordFormat = 'bytes' | 'json' | { avroSchema: string | object };

export interface RecordCodec<T = unknown> {
  readonly format: 'bytes' | 'json' | 'avro';
  /** The Avro schema as JSON text (avro only), compared between connected ports. */
  readonly schema?: string;
  encodeBatch(records: readonly T[]): Buffer[];
  decode(body: Buffer): T;
}

function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

class BytesCodec implements RecordCodec<Buffer | string> {
  readonly format = 'bytes' as const;
  encodeBatch(records: readonly (Buffer | string)[]): Buffer[] {
    return records.map((r, i) => {
      if (Buffer.isBuffer(r)) return r;
      if (typeof r === 'string') return Buffer.from(r, 'utf8');
      if ((r as unknown) instanceof Uint8Array) return Buffer.from(r as Uint8Array);
      throw new SluiceError(
        'SLUICE_RECORD_INVALID',
        `Record ${i} of the batch is ${show(r)}, but this channel sends raw bytes; nothing of the batch was sent. ` +
          "Pass Buffers or strings, or open the channel with format 'json' or an Avro schema.",
      );
    });
  }
  decode(body: Buffer): Buffer {
    return body;
  }
}

class JsonCodec implements RecordCodec<unknown> {
  readonly format = 'json' as const;
  encodeBatch(records: readonly unknown[]): Buffer[] {
    return records.map((r, i) => {
      let text: string | undefined;
      try {
        text = JSON.stringify(r);
      } catch (err) {
        throw new SluiceError(
          'SLUICE_RECORD_INVALID',
          `Record ${i} of the batch cannot be written as JSON (${(err as Error).message}); nothing of the batch was sent. Remove cycles and BigInts from the record.`,
        );
      }
      if (text === undefined) {
        throw new SluiceError(
          'SLUICE_RECORD_INVALID',
          `Record ${i} of the batch is ${String(r)}, which has no JSON form; nothing of the batch was sent.`,
        );
      }
      return Buffer.from(text, 'utf8');
    });
  }
  decode(body: Buffer): unknown {
    return JSON.parse(body.toString('utf8'));
  }
}

class AvroCodec implements RecordCodec<unknown> {
  readonly format = 'avro' as const;
  readonly schema: string;
  readonly #type: avro.Type;

  constructor(schema: string | object) {
    this.schema = typeof schema === 'string' ? schema : JSON.stringify(schema);
    try {
      this.#type = avro.Type.forSchema(typeof schema === 'string' ? JSON.parse(schema) : schema, {
        // avro 1.10 accepts records with extra fields as long as the schema's fields are there
        noAnonymousTypes: false,
      });
    } catch (err) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `The channel's Avro schema is not valid: ${(err as Error).message}. Give an Avro schema as JSON (a record type with fields).`,
      );
    }
  }

  encodeBatch(records: readonly unknown[]): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      const problems: string[] = [];
      if (
        !this.#type.isValid(r, {
          errorHook: (path, value, type) =>
            problems.push(`${path.join('.') || '(record)'}: expected ${type.toString()}, got ${show(value)}`),
        })
      ) {
        throw new SluiceError(
          'SLUICE_RECORD_INVALID',
          `Record ${i} of the batch does not match the channel's Avro schema (${problems.join('; ')}); nothing of the batch was sent. Fix the record or the schema.`,
          { details: { index: i, problems } },
        );
      }
      out.push(this.#type.toBuffer(r));
    }
    return out;
  }

  decode(body: Buffer): unknown {
    // plain objects, like avro's generic DatumReader gives dicts
    return plain(this.#type.fromBuffer(body));
  }
}

function plain(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return v.map(plain);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = plain(x);
  return out;
}

export function recordCodec(format: RecordFormat = 'bytes'): RecordCodec<unknown> {
  if (format === 'bytes') return new BytesCodec() as RecordCodec<unknown>;
  if (format === 'json') return new JsonCodec();
  if (typeof format === 'object' && format !== null && 'avroSchema' in format)
    return new AvroCodec(format.avroSchema);
  throw new SluiceError(
    'SLUICE_CONFIG_INVALID',
    `Unknown record format ${show(format)}; use 'bytes', 'json' or { avroSchema }.`,
  );
}
