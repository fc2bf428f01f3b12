/**
 * The benchmark's HTTP server, run as its own process so that serving does not share the
 * event loop of the client being measured: `node http-serve.js /name=FILE ...` prints the
 * base URL on stdout and serves until stdin closes.
 */
import { serveFiles } from '../test/sources/http-server.js';

const files: Record<string, string> = {};
for (const arg of process.argv.slice(2)) {
  const eq = arg.indexOf('=');
  files[arg.slice(0, eq)] = arg.slice(eq + 1);
}
const server = await serveFiles(files);
process.stdout.write(`${server.url('')}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void server.close().then(() => process.exit(0));
});
