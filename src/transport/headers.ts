import type { HeaderValue } from './types.ts';

/**
 * A compact binary form for record headers, for transports that store them as one blob:
 * `u16 count`, then per header `u16 keyLength, key (UTF-8), u32 valueLength, value`.
 */
export function encodeHeaders(headers: Record<string, HeaderValue> | undefined): Buffer | null {
  if (headers === undefined) return null;
  const entries = Object.entries(headers);
  if (entries.length === 0) return null;
  const parts: Buffer[] = [];
  let size = 2;
  for (const [k, v] of entries) {
    const kb = Buffer.from(k, 'utf8');
    const vb = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    parts.push(kb, vb);
    size += 2 + kb.length + 4 + vb.length;
  }
  const out = Buffer.allocUnsafe(size);
  let pos = out.writeUInt16BE(entries.length, 0);
  for (let i = 0; i < parts.length; i += 2) {
    const kb = parts[i]!;
    const vb = parts[i + 1]!;
    pos = out.writeUInt16BE(kb.length, pos);
    pos += kb.copy(out, pos);
    pos = out.writeUInt32BE(vb.length, pos);
    pos += vb.copy(out, pos);
  }
  return out;
}

export function decodeHeaders(blob: Uint8Array | null): Record<string, Buffer> {
  const headers: Record<string, Buffer> = {};
  if (blob === null || blob.length === 0) return headers;
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const count = b.readUInt16BE(0);
  let pos = 2;
  for (let i = 0; i < count; i++) {
    const kl = b.readUInt16BE(pos);
    pos += 2;
    const k = b.toString('utf8', pos, pos + kl);
    pos += kl;
    const vl = b.readUInt32BE(pos);
    pos += 4;
    headers[k] = b.subarray(pos, pos + vl);
    pos += vl;
  }
  return headers;
}
