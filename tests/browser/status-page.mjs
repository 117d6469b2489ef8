// The status page in headless Chromium: it must show live figures that
// follow the load. The page opens WebSockets of its own through the same
// proxy, and the open count must go 0 -> 5 -> 0 with the closes listed.
//
//   node tests/browser/status-page.mjs http://127.0.0.1:PORT/status
//
// Exits non-zero with a reason on any failure.
import { launch, urlArgument } from './launch.mjs';

const url = urlArgument('status-page.mjs');
const browser = await launch();
const text = (page, id) => page.evaluate((i) => document.getElementById(i).textContent, id);
const until = (page, id, want) => page.waitForFunction(
  ([i, w]) => document.getElementById(i).textContent === w, [id, want], { timeout: 10_000 },
).catch(async () => { throw new Error(`#${id} never showed ${want} (shows ${await text(page, id)})`); });
try {
  const page = await browser.newPage();
  const failures = [];
  page.on('pageerror', (e) => failures.push(`script error: ${e.message}`));
  const response = await page.goto(url);
  if (response.status() !== 200) throw new Error(`page answered ${response.status()}`);
  await page.waitForFunction(() => document.getElementById('state').textContent.startsWith('live'), null, { timeout: 10_000 });
  await until(page, 'ws-open-total', '0');
  await page.evaluate(() => new Promise((resolve, reject) => {
    window.sockets = [];
    let open = 0;
    for (let i = 0; i < 5; i++) {
      const ws = new WebSocket(`ws://${location.host}/ws`);
      ws.onopen = () => { if (++open === 5) resolve(); };
      ws.onerror = () => reject(new Error('a WebSocket failed'));
      window.sockets.push(ws);
    }
  }));
  await until(page, 'ws-open-total', '5');
  const routes = await page.evaluate(() => document.getElementById('routes').textContent);
  if (!routes.includes('/ws')) throw new Error(`routes table: ${routes}`);
  await page.evaluate(() => window.sockets.forEach((ws) => ws.close(4001, 'bye')));
  await until(page, 'ws-open-total', '0');
  await page.waitForFunction(() => document.getElementById('closes').textContent.includes('4xxx'), null, { timeout: 10_000 })
    .catch(() => { throw new Error('the closes were not listed'); });
  if (failures.length) throw new Error(failures.join('; '));
  console.log('ok: open WebSockets 0 -> 5 -> 0, closes listed');
} catch (e) {
  console.error(`browser test failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
