/**
 * Echo backend of `npm run bench -- proxy`: TCP and UDP on the same port (argv[2]), every byte or
 * datagram sent back to where it came from. Prints {"ready":port} once both sockets listen.
 * The same backend serves the direct runs and both proxies, so it costs them all the same.
 */
import dgram from "node:dgram";
import net from "node:net";

const port = Number(process.argv[2]);

const tcp = net.createServer({ noDelay: true }, (s) => {
  s.on("error", () => s.destroy());
  s.pipe(s); // the client's FIN ends the echo (allowHalfOpen is off)
});

const udp = dgram.createSocket("udp4");
udp.on("message", (msg, from) => udp.send(msg, from.port, from.address));

await Promise.all([
  new Promise<void>((resolve) => tcp.listen({ port, host: "0.0.0.0", backlog: 4096 }, resolve)),
  new Promise<void>((resolve) => udp.bind(port, "0.0.0.0", resolve)),
]);
console.log(JSON.stringify({ ready: port }));
