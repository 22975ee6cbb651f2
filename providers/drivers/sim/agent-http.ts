// The HTTP client of the sim's VM agents: one JSON POST to the boot endpoint
// at a time per connection, over HTTP/1.1 connections kept alive and shared
// by the data center's agents, written and read here on a plain (or TLS)
// socket.
//
// Why not node:http (providers/http-send.ts): the sim runs inside the DMZ
// client's process, so its VMs' client side, which a real VM pays for, was
// billed to the DMZ client: node:http's ClientRequest, its agent and the
// answer's IncomingMessage stream cost ~0.1 ms of CPU per boot (2026-12-07,
// bench/apply/run.ts), about a tenth of a DMZ client's CPU per VM. The boot
// endpoint still gets an ordinary HTTP/1.1 request over its own TCP (or TLS)
// connection, as a VM's agent (curl in providers/boot-agent/agent.sh) sends
// it: its side of the exchange costs what it did.
//
// What it reads of an answer: the status line, Content-Length,
// Transfer-Encoding: chunked, Connection and Retry-After; a body without
// either length runs to the connection's end. Answers the sim never gets
// (1xx but for skipping them, upgrades) are not handled.
import net from 'node:net';
import tls from 'node:tls';
import { INCOMPLETE_ANSWER } from '../../fetch-errors.ts';
import type { HttpAnswer } from '../../http-send.ts';

/**
 * An idle connection older than this is closed, not reused: under a Node
 * server's default keep-alive timeout (5 s), as node:http's agent does, so a
 * request is never written to a connection the server is closing.
 */
const IDLE_MS = 4_000;

const CRLF2 = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

export class AgentHttp {
  private readonly idle: Conn[] = [];
  /** The request up to its Content-Length's value. */
  private readonly head: string;
  private readonly connect: () => net.Socket;
  private closed = false;

  constructor(url: URL, ca?: string) {
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const https = url.protocol === 'https:';
    if (!https && url.protocol !== 'http:') throw new Error(`the boot endpoint ${url.href} is not an http or https URL`);
    const port = Number(url.port || (https ? 443 : 80));
    const auth = url.username || url.password ? `authorization: Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}\r\n` : '';
    this.head = `POST ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n${auth}connection: keep-alive\r\ncontent-type: application/json\r\ncontent-length: `;
    this.connect = https
      ? () => tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ...(ca !== undefined ? { ca } : {}) })
      : () => net.connect({ host, port });
  }

  /** One POST of `body` (JSON text): its answer, or a rejection (the socket's error, or a `TimeoutError` after timeoutMs). */
  post(body: string, timeoutMs: number): Promise<HttpAnswer> {
    let conn: Conn | undefined;
    const now = Date.now();
    while ((conn = this.idle.pop()) !== undefined && now - conn.idleSince > IDLE_MS) conn.socket.destroy();
    if (conn === undefined) {
      const socket = this.connect();
      socket.setNoDelay(true);
      conn = new Conn(socket, this);
    } else {
      conn.socket.ref();
    }
    const c = conn;
    return new Promise<HttpAnswer>((resolve, reject) => {
      c.start(new Exchange(resolve, reject, timeoutMs, c));
      c.socket.write(`${this.head}${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }

  /** Connections idle in the pool (tests read it). */
  get idleConnections(): number {
    return this.idle.length;
  }

  /** `conn` finished an exchange and may carry another. */
  release(conn: Conn): void {
    if (this.closed) {
      conn.socket.destroy();
      return;
    }
    conn.idleSince = Date.now();
    // An idle connection keeps no process alive (as node:http's agent unrefs its free sockets).
    conn.socket.unref();
    this.idle.push(conn);
  }

  /** `conn` closed: out of the pool. */
  drop(conn: Conn): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes the idle connections; exchanges under way finish, and their connections close then. */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }
}

/** One connection: its listeners stay for its life, and pass what comes to the exchange under way. */
class Conn {
  exchange: Exchange | undefined;
  idleSince = 0;

  constructor(
    readonly socket: net.Socket,
    pool: AgentHttp,
  ) {
    socket.on('data', (chunk: Buffer) => {
      if (this.exchange === undefined) {
        socket.destroy(); // nothing was asked
        return;
      }
      const done = this.exchange.data(chunk);
      if (done === undefined) return;
      this.exchange = undefined;
      if (done) pool.release(this);
      else socket.destroy();
    });
    // An idle connection's error is followed by its close.
    socket.on('error', (err: Error) => this.exchange?.fail(err));
    socket.on('close', () => {
      pool.drop(this);
      const x = this.exchange;
      this.exchange = undefined;
      x?.closed();
    });
  }

  start(x: Exchange): void {
    this.exchange = x;
  }
}

/** One request's answer, read as it arrives. */
class Exchange {
  private buf: Buffer | undefined;
  private status = 0;
  private retryAfter: string | null = null;
  /** The body's length; -1: chunked; -2: to the connection's end; undefined: the head is not read yet. */
  private length: number | undefined;
  private keepAlive = true;
  private readonly body: Buffer[] = [];
  private settled = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly resolve: (a: HttpAnswer) => void,
    private readonly reject: (err: unknown) => void,
    timeoutMs: number,
    conn: Conn,
  ) {
    this.timer = setTimeout(() => {
      this.fail(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { name: 'TimeoutError' }));
      conn.socket.destroy();
    }, timeoutMs);
  }

  /** Takes a chunk: undefined while the answer is incomplete; once complete, whether the connection may carry another. */
  data(chunk: Buffer): boolean | undefined {
    let buf = this.buf === undefined ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.length === undefined) {
        const end = buf.indexOf(CRLF2);
        if (end < 0) break;
        if (!this.head(buf.toString('latin1', 0, end))) return false;
        buf = buf.subarray(end + 4);
        continue; // a 1xx answer's head was skipped (length still undefined), or the body begins
      }
      if (this.length >= 0) {
        if (buf.length < this.length) break;
        this.body.push(buf.subarray(0, this.length));
        return this.finish(buf.length === this.length);
      }
      if (this.length === -2) {
        this.body.push(buf);
        buf = Buffer.alloc(0);
        break;
      }
      // Chunked: a size line, the chunk and its CRLF; a last chunk of size 0, trailers, an empty line.
      const eol = buf.indexOf(CRLF);
      if (eol < 0) break;
      const size = parseInt(buf.toString('latin1', 0, eol), 16);
      if (Number.isNaN(size)) return this.malformed('a chunk size');
      if (size === 0) {
        const end = buf.indexOf(CRLF, eol + 2) === eol + 2 ? eol + 4 : buf.indexOf(CRLF2, eol + 2) + 4;
        if (end < 4) break;
        return this.finish(buf.length === end);
      }
      if (buf.length < eol + 2 + size + 2) break;
      this.body.push(buf.subarray(eol + 2, eol + 2 + size));
      buf = buf.subarray(eol + 2 + size + 2);
    }
    this.buf = buf.length > 0 ? buf : undefined;
    return undefined;
  }

  /** Reads the answer's head; false when it is not HTTP (settled as an error). */
  private head(text: string): boolean {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
    if (!m) return this.malformed('its status line');
    const status = Number(m[2]);
    if (status >= 100 && status < 200) return true; // 100 Continue, 103 Early Hints: the answer follows
    this.status = status;
    let length: number | undefined;
    let chunked = false;
    let connection = '';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') length = Number(value);
      else if (name === 'transfer-encoding') chunked = /(^|,)\s*chunked\s*$/i.test(value);
      else if (name === 'connection') connection = value.toLowerCase();
      else if (name === 'retry-after') this.retryAfter = value;
    }
    this.keepAlive = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
    if (chunked) this.length = -1;
    else if (length !== undefined && Number.isInteger(length) && length >= 0) this.length = length;
    else if (length !== undefined) return this.malformed('its Content-Length');
    else if (status === 204 || status === 304) this.length = 0;
    else {
      this.length = -2;
      this.keepAlive = false;
    }
    return true;
  }

  private malformed(what: string): false {
    this.fail(Object.assign(new Error(`the boot endpoint's answer is not HTTP/1.x: ${what} is malformed`), { code: 'HPE_INVALID' }));
    return false;
  }

  private finish(reusable: boolean): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    this.resolve({ status: this.status, text: Buffer.concat(this.body).toString('utf8'), retryAfter: this.retryAfter });
    return reusable && this.keepAlive;
  }

  /** The connection closed: an answer running to its end is complete, any other is not. */
  closed(): void {
    if (this.length === -2) this.finish(false);
    else this.fail(Object.assign(new Error(INCOMPLETE_ANSWER), { code: 'ECONNRESET' }));
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.reject(err);
  }
}
