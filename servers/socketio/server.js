"use strict";

// Minimal, ordinary Socket.IO fan-out server used by pushbench as a target.
//
//   npm start -- [--port N] [--host ADDR] [--ping-interval MS] [--ping-timeout MS]
//
// Prints exactly one line on stdout once listening:
//   pushbench socketio server listening on http://HOST:PORT
// Everything else (errors, warnings) goes to stderr.
//
// Client -> server events:
//   join           (topic | [topic, ...], ack?)  -> socket.join(each); ack({joined})
//   publish        (event)                       -> io.to(event.t).emit("event", event)
//   publish_batch  ([event, ...])                -> the same for each, in order
// An event is {t: topic, s: seq, i: "intendedNs", p: "sentNs", d: payload}. It is
// treated as opaque except for `t`: nanosecond stamps travel as decimal strings
// because they exceed 2^53 and JSON.parse would round them.
//
// GET /stats -> {"connections":N,"published":N,"dropped":N}

const http = require("http");
const { Server } = require("socket.io");

const TOPIC_RE = /^[A-Za-z0-9_.-]{1,64}$/;

function usage(msg) {
  if (msg) process.stderr.write(`error: ${msg}\n`);
  process.stderr.write(
    "usage: node server.js [--port N] [--host ADDR] [--ping-interval MS] [--ping-timeout MS]\n",
  );
  process.exit(2);
}

function parseIntArg(name, value, min, max) {
  if (value === undefined || !/^\d+$/.test(value)) usage(`${name} needs an integer`);
  const n = Number(value);
  if (n < min || n > max) usage(`${name} must be in ${min}..${max}`);
  return n;
}

function parseArgs(argv) {
  const opts = { port: 0, host: "127.0.0.1", pingInterval: 25000, pingTimeout: 20000 };
  for (let k = 0; k < argv.length; k++) {
    let arg = argv[k];
    let value;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => (value !== undefined ? value : argv[++k]);
    switch (arg) {
      case "--port":
        opts.port = parseIntArg(arg, next(), 0, 65535);
        break;
      case "--host": {
        const h = next();
        if (!h) usage("--host needs an address");
        opts.host = h;
        break;
      }
      case "--ping-interval":
        opts.pingInterval = parseIntArg(arg, next(), 1, 2147483647);
        break;
      case "--ping-timeout":
        opts.pingTimeout = parseIntArg(arg, next(), 1, 2147483647);
        break;
      case "-h":
      case "--help":
        usage();
        break;
      default:
        usage(`unknown argument ${JSON.stringify(argv[k])}`);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const stats = { connections: 0, published: 0, dropped: 0 };

const httpServer = http.createServer((req, res) => {
  // socket.io handles everything under /socket.io/ before this listener runs.
  const url = req.url || "";
  if (req.method === "GET" && (url === "/stats" || url.startsWith("/stats?"))) {
    const body = JSON.stringify(stats);
    res.writeHead(200, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
      "Cache-Control": "no-store",
    });
    res.end(body);
    return;
  }
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found\n");
});

const io = new Server(httpServer, {
  path: "/socket.io/",
  transports: ["polling", "websocket"],
  allowUpgrades: false,
  cors: undefined,
  serveClient: false,
  maxHttpBufferSize: 1e6,
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
});

function publishOne(ev) {
  if (ev === null || typeof ev !== "object" || Array.isArray(ev)) {
    stats.dropped++;
    return;
  }
  const t = ev.t;
  if (typeof t !== "string" || !TOPIC_RE.test(t)) {
    stats.dropped++;
    return;
  }
  stats.published++;
  io.to(t).emit("event", ev);
}

io.on("connection", (socket) => {
  stats.connections++;
  socket.on("disconnect", () => {
    stats.connections--;
  });

  socket.on("join", (topics, ack) => {
    const list = Array.isArray(topics) ? topics : [topics];
    const joined = [];
    for (const t of list) {
      if (typeof t === "string" && TOPIC_RE.test(t)) {
        socket.join(t);
        joined.push(t);
      }
    }
    if (typeof ack === "function") ack({ joined });
  });

  socket.on("publish", (ev) => {
    publishOne(ev);
  });

  socket.on("publish_batch", (evs) => {
    if (!Array.isArray(evs)) {
      stats.dropped++;
      return;
    }
    for (const ev of evs) publishOne(ev);
  });
});

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  // io.close() disconnects every client and closes the http server.
  io.close(() => process.exit(0));
  // Do not wait on lingering keep-alive sockets.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

const parentPid = process.env.PUSHBENCH_PARENT_PID;
if (parentPid) {
  const pid = Number(parentPid);
  if (Number.isInteger(pid) && pid > 0) {
    setInterval(() => {
      try {
        process.kill(pid, 0);
      } catch (e) {
        // EPERM means the process exists but belongs to someone else.
        if (e.code !== "EPERM") shutdown();
      }
    }, 500).unref();
  } else {
    process.stderr.write(`warning: ignoring PUSHBENCH_PARENT_PID=${parentPid}\n`);
  }
}

httpServer.on("error", (err) => {
  process.stderr.write(`error: ${err.message}\n`);
  process.exit(1);
});

httpServer.listen(opts.port, opts.host, () => {
  const addr = httpServer.address();
  const host = addr.family === "IPv6" || addr.family === 6 ? `[${addr.address}]` : addr.address;
  process.stdout.write(`pushbench socketio server listening on http://${host}:${addr.port}\n`);
});
