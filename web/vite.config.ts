// Built into static files that `hsea serve` serves (src/web/); scripts/build-web passes --outDir.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  build: {
    // The page's CSP allows scripts, styles and fonts from our origin only: no inline script
    // (the module-preload polyfill is one) and no data: URLs for small assets.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  // `npm run dev` proxies the API to a local `hsea serve` (./scripts/run).
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
});
