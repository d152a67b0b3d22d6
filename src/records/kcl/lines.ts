import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/**
 * Reads a byte stream one line at a time (`\n` or `\r\n`), on demand: `next()` resolves with the next line, or
 * null at the end of the stream (or after a read error, which `error` then holds). The stream is paused while
 * more than `highWaterLines` lines are waiting, so a fast writer cannot fill memory.
 */
export class LineReader {
  #decoder = new StringDecoder('utf8');
  #partial = '';
  #lines: string[] = [];
  #ended = false;
  #waiter: ((line: string | null) => void) | undefined;
  readonly #stream: Readable;
  readonly #highWaterLines: number;
  error: Error | undefined;

  constructor(stream: Readable, highWaterLines = 64) {
    this.#stream = stream;
    this.#highWaterLines = highWaterLines;
    stream.on('data', (chunk: Buffer | string) => {
      this.#push(typeof chunk === 'string' ? chunk : this.#decoder.write(chunk));
    });
    stream.on('end', () => this.#end());
    stream.on('close', () => this.#end());
    stream.on('error', (err: Error) => {
      this.error ??= err;
      this.#end();
    });
  }

  #push(text: string): void {
    if (text.length === 0) return;
    const parts = (this.#partial + text).split('\n');
    this.#partial = parts.pop()!;
    for (const p of parts) this.#lines.push(p.endsWith('\r') ? p.slice(0, -1) : p);
    this.#deliver();
    if (this.#lines.length > this.#highWaterLines) this.#stream.pause();
  }

  #end(): void {
    if (this.#ended) return;
    const rest = this.#partial + this.#decoder.end();
    this.#partial = '';
    if (rest.length > 0) this.#lines.push(rest);
    this.#ended = true;
    this.#deliver();
  }

  #deliver(): void {
    if (this.#waiter === undefined) return;
    if (this.#lines.length > 0) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w(this.#lines.shift()!);
    } else if (this.#ended) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w(null);
    }
  }

  /** The next line (without its line break), or null at the end. One caller at a time. */
  next(): Promise<string | null> {
    if (this.#lines.length > 0) {
      const line = this.#lines.shift()!;
      if (this.#lines.length <= this.#highWaterLines && this.#stream.isPaused()) this.#stream.resume();
      return Promise.resolve(line);
    }
    if (this.#ended) return Promise.resolve(null);
    if (this.#waiter !== undefined) throw new Error('LineReader.next() called while another call is waiting');
    if (this.#stream.isPaused()) this.#stream.resume();
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }
}
