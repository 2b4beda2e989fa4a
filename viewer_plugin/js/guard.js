// Loads one plugin module; if it fails, the viewer keeps working without it and says so on screen.
// Why: OHIF awaits every configured module at boot, and one rejected import() leaves a black page.

const status = (window.LDH_ASSIST_STATUS = window.LDH_ASSIST_STATUS || {});

export function banner(text) {
  const show = () => {
    let el = document.getElementById('ldh-assist-banner');
    if (!el) {
      el = document.createElement('div');
      el.id = 'ldh-assist-banner';
      el.setAttribute('role', 'alert');
      el.style.cssText = 'position:fixed;left:50%;bottom:12px;transform:translateX(-50%);z-index:100000;'
        + 'background:#7a1f1f;color:#fff;padding:8px 14px;border-radius:6px;font:14px sans-serif;max-width:80vw';
      document.body.appendChild(el);
    }
    el.textContent = text;
  };
  if (document.body) show(); else document.addEventListener('DOMContentLoaded', show);
}

export async function loadOrDegrade(kind, url, fallback) {
  if (kind === 'mode' && status.extension !== 'ok') { // its banner is already up; a mode without it cannot work
    status.mode = 'failed';
    return fallback;
  }
  try {
    const module = await import(new URL(url, import.meta.url));
    if (!module.default || !module.default.id) throw new Error(`${url} has no default export with an id`);
    status[kind] = 'ok';
    return module.default;
  } catch (err) {
    status[kind] = 'failed';
    console.error(`LDH Assist ${kind} failed to load`, err);
    banner(`LDH Assist could not load its ${kind} (${err.message}). The plain viewer is shown; AI review is unavailable.`);
    return fallback;
  }
}
