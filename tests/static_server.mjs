// A static file server in Node.js, with no Python behind it: `node static_server.mjs FOLDER PORT` serves FOLDER on
// 127.0.0.1:PORT, as any static host serves an exported web page (the web export's browser tests run on it).
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const root = path.resolve(process.argv[2]);
const port = Number(process.argv[3]);
const types = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".wasm": "application/wasm", ".jpg": "image/jpeg", ".png": "image/png", ".txt": "text/plain",
};

http.createServer((request, response) => {
  let file = path.join(root, decodeURIComponent(new URL(request.url, "http://localhost").pathname));
  if (file !== root && !file.startsWith(root + path.sep)) {
    response.writeHead(403).end();
    return;
  }
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, "index.html");
  fs.readFile(file, (error, data) => {
    if (error) {
      response.writeHead(404).end("not found");
      return;
    }
    response.writeHead(200, { "Content-Type": types[path.extname(file)] || "application/octet-stream" }).end(data);
  });
}).listen(port, "127.0.0.1");
