// Two browser tabs on the demo chat page, through Switchyard: each tab's
// message must reach the other over the proxied WebSocket.
//
//   node tests/browser/demo-chat.mjs http://127.0.0.1:8080/
//
// Chromium comes from $CHROMIUM (default /usr/bin/chromium). Exits non-zero
// with a reason on any failure.
import { launch, urlArgument } from './launch.mjs';

const url = urlArgument('demo-chat.mjs');
const browser = await launch();
const timeout = 10_000;

try {
  const tabs = [];
  for (const name of ['A', 'B']) {
    const page = await browser.newPage();
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    const failures = [];
    page.on('requestfailed', (r) => failures.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on('pageerror', (e) => failures.push(`script error: ${e.message}`));
    const response = await page.goto(url);
    if (response.status() !== 200) throw new Error(`tab ${name}: page answered ${response.status()}`);
    // The page writes "connected as ..." once its WebSocket is open.
    await page.waitForFunction(() => document.querySelector('#log').innerText.includes('connected as'), null, { timeout });
    tabs.push({ name, page, sockets, failures });
  }

  const say = async (from, to, text) => {
    await from.page.fill('#text', text);
    await from.page.press('#text', 'Enter');
    await to.page.waitForFunction(
      (t) => document.querySelector('#log').innerText.includes(t), text, { timeout });
  };
  await say(tabs[0], tabs[1], 'hello from A');
  await say(tabs[1], tabs[0], 'hello from B');

  const expected = new URL('/ws/chat', url).href.replace(/^http/, 'ws');
  for (const tab of tabs) {
    if (!tab.sockets.includes(expected)) {
      throw new Error(`tab ${tab.name} opened ${JSON.stringify(tab.sockets)}, expected ${expected}`);
    }
    if (tab.failures.length) throw new Error(`tab ${tab.name}: ${tab.failures.join('; ')}`);
  }
  console.log(`ok: two tabs chatted through ${expected}`);
} catch (e) {
  console.error(`browser test failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
