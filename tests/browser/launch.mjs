// What every browser test shares: its URL argument and a headless
// Chromium from $CHROMIUM (default /usr/bin/chromium), without sandbox
// (CI runs as root) and without background traffic off loopback.
import { chromium } from 'playwright-core';

// The URL the script was given, or a usage line and exit status 2.
export function urlArgument(script) {
  const url = process.argv[2];
  if (!url) {
    console.error(`usage: ${script} URL`);
    process.exit(2);
  }
  return url;
}

// Chromium, with `extra` switches after the shared ones.
export function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extra],
  });
}
