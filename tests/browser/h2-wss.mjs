// A page over HTTP/2 (TLS, ALPN h2) whose script opens a wss:// WebSocket
// to the same origin and waits for its echo, through Switchyard.
//
//   node tests/browser/h2-wss.mjs https://localhost:PORT/
//
// The certificate is the test's own (errors ignored). Prints the protocol
// the page came over; exits non-zero with a reason on any failure.
import { launch, urlArgument } from './launch.mjs';

const url = urlArgument('h2-wss.mjs');
const browser = await launch(['--ignore-certificate-errors']);
try {
  const page = await browser.newPage();
  const failures = [];
  page.on('pageerror', (e) => failures.push(`script error: ${e.message}`));
  const response = await page.goto(url);
  if (response.status() !== 200) throw new Error(`page answered ${response.status()}`);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  await page.waitForFunction(() => document.title.startsWith('echoed'), null, { timeout: 10_000 });
  const title = await page.title();
  if (title !== 'echoed: hello over wss') throw new Error(`page says ${title}`);
  if (failures.length) throw new Error(failures.join('; '));
  console.log(`ok: page over ${protocol}, ${title}`);
} catch (e) {
  console.error(`browser test failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
