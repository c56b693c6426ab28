/**
 * Load generator of `npm run bench -- proxy`, one process per measurement, against 127.0.0.1:PORT
 * (the echo backend directly, or a proxy in front of it). Prints one JSON line.
 *   connects PORT SECONDS CONCURRENCY  CONCURRENCY loops of: connect, send 64 B, read the 64 B
 *                                      echo, close → {perSec, completed, errors}
 *   udp-rps  PORT SECONDS CONCURRENCY  CONCURRENCY UDP sockets (flows), each a loop of 64 B
 *                                      request → reply → {perSec, completed, lost}
 *   tcp-rtt  PORT SAMPLES              one connection, 64 B ping-pong → {p50Us, p99Us, …}
 *   udp-rtt  PORT SAMPLES              one UDP flow, the same
 * A UDP request unanswered within LOST_MS counts as lost and is sent again.
 */
import dgram from "node:dgram";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { percentile, round } from "./stats.js";

const HOST = "127.0.0.1";
const PAYLOAD = Buffer.alloc(64, "x");
const WARMUP = 500;
const LOST_MS = 200;

/** One connect → 64 B → echo → close cycle. */
function echoOnce(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port, noDelay: true });
    let got = 0;
    s.setTimeout(5000, () => s.destroy(new Error("timed out")));
    s.on("connect", () => s.write(PAYLOAD));
    s.on("data", (d: Buffer) => {
      got += d.length;
      if (got < PAYLOAD.length) return;
      s.destroy(); // everything read: a FIN, as a client's close()
      resolve();
    });
    s.on("error", reject);
    s.on("close", () => reject(new Error("closed before the echo"))); // no-op once resolved
  });
}

async function connects(port: number, seconds: number, concurrency: number): Promise<object> {
  let completed = 0;
  let errors = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      await echoOnce(port).then(
        () => completed++,
        () => errors++,
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (performance.now() - t0) / 1000;
  return { perSec: Math.round(completed / elapsed), completed, errors, seconds: round(elapsed, 2) };
}

async function udpRps(port: number, seconds: number, concurrency: number): Promise<object> {
  let completed = 0;
  let lost = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const flow = (): Promise<void> =>
    new Promise((resolve) => {
      const sock = dgram.createSocket("udp4");
      const timer = setTimeout(() => {
        lost++;
        send();
      }, LOST_MS);
      const send = (): void => {
        if (performance.now() >= end) {
          clearTimeout(timer);
          sock.close(() => resolve());
          return;
        }
        timer.refresh();
        sock.send(PAYLOAD);
      };
      sock.on("message", () => {
        if (performance.now() < end) completed++;
        send();
      });
      sock.on("error", () => undefined); // ECONNREFUSED: the timer resends
      sock.connect(port, HOST, send);
    });
  await Promise.all(Array.from({ length: concurrency }, flow));
  return { perSec: Math.round(completed / seconds), completed, lost, flows: concurrency };
}

/** Ping-pong round trips in µs; `ping` sends one request, `onReply` is called per full reply. */
function pingPong(samples: number, ping: () => void, subscribe: (onReply: () => void) => void): Promise<number[]> {
  return new Promise((resolve) => {
    const rtts: number[] = [];
    let sent = 0;
    let n = 0;
    subscribe(() => {
      if (n++ >= WARMUP) rtts.push((performance.now() - sent) * 1000);
      if (rtts.length >= samples) return resolve(rtts);
      sent = performance.now();
      ping();
    });
    sent = performance.now();
    ping();
  });
}

function rttSummary(rtts: number[], extra: object = {}): object {
  return { p50Us: round(percentile(rtts, 50), 1), p99Us: round(percentile(rtts, 99), 1), samples: rtts.length, ...extra };
}

async function tcpRtt(port: number, samples: number): Promise<object> {
  const s = net.connect({ host: HOST, port, noDelay: true });
  await new Promise((resolve, reject) => s.once("connect", resolve).once("error", reject));
  const rtts = await pingPong(
    samples,
    () => s.write(PAYLOAD),
    (onReply) => {
      let got = 0;
      s.on("data", (d: Buffer) => {
        got += d.length;
        if (got < PAYLOAD.length) return;
        got -= PAYLOAD.length;
        onReply();
      });
    },
  );
  s.destroy();
  return rttSummary(rtts);
}

async function udpRtt(port: number, samples: number): Promise<object> {
  const sock = dgram.createSocket("udp4");
  sock.on("error", () => undefined);
  await new Promise<void>((resolve) => sock.connect(port, HOST, resolve));
  let lost = 0;
  const timer = setInterval(() => {
    lost++;
    sock.send(PAYLOAD);
  }, LOST_MS);
  const rtts = await pingPong(
    samples,
    () => {
      timer.refresh();
      sock.send(PAYLOAD);
    },
    (onReply) => sock.on("message", onReply),
  );
  clearInterval(timer);
  sock.close();
  return rttSummary(rtts, { lost });
}

async function main(): Promise<void> {
  const [mode, ...numbers] = process.argv.slice(2);
  const [port, n, concurrency] = numbers.map(Number) as [number, number, number];
  const result =
    mode === "connects"
      ? await connects(port, n, concurrency)
      : mode === "udp-rps"
        ? await udpRps(port, n, concurrency)
        : mode === "tcp-rtt"
          ? await tcpRtt(port, n)
          : mode === "udp-rtt"
            ? await udpRtt(port, n)
            : undefined;
  if (result === undefined) throw new Error(`unknown mode ${mode}`);
  console.log(JSON.stringify(result));
}

await main();
