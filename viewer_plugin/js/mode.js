// "LDH review" mode: OHIF's basic viewer with the LDH review panel on the right. Reuses @ohif/mode-basic
// (loaded through OHIF's own module loader) and only changes id, route and panels.

import { banner } from './guard.js';

// OHIF imports a mode's `extensions` keys as module specifiers: ours is the URL of our extension entry point
// (already imported at boot, so the same module, already registered as 'ldh-assist')
const EXTENSION_URL = new URL('./ldh-extension.js', import.meta.url).pathname;
const PANEL = 'ldh-assist.panelModule.ldh-review';
const MEASUREMENTS = '@ohif/extension-cornerstone.panelModule.panelMeasurement';

export default {
  id: 'ldh-review',
  // OHIF awaits this at boot: a throw would leave a black page, so a failure registers no mode and says why
  async modeFactory({ modeConfiguration, loadModules }) {
    try {
      const [basic] = await loadModules(['@ohif/mode-basic']);
      return build(basic, modeConfiguration);
    } catch (err) {
      console.error('LDH review mode', err);
      banner(`LDH Assist could not set up its review mode (${err.message}). The plain viewer is shown.`);
      return null;
    }
  },
};

function build(basic, modeConfiguration) {
  const base = basic.modeFactory.call(basic, { modeConfiguration });
  const route = base.routes[0];
  const props = route.layoutInstance.props;
  const routeName = window.LDH_ASSIST?.modeRoute || 'ldh-review';
  return {
    ...base,
    id: 'ldh-review',
    routeName,
    displayName: 'LDH review',
    hide: false,
    routes: [{
      ...route,
      path: routeName,
      layoutInstance: { ...route.layoutInstance, props: { ...props, rightPanels: [PANEL, MEASUREMENTS], rightPanelClosed: false } },
    }],
    extensions: { ...base.extensions, [EXTENSION_URL]: '^0.1.0' },
    // MR only: the panel reviews one sagittal MR series
    isValidMode: ({ modalities }) => ({
      valid: modalities.split('\\').includes('MR'),
      description: 'LDH review needs an MR study',
    }),
  };
}
