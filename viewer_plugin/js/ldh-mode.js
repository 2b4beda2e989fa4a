// Entry point listed in OHIF's window.config.modes: never fails; a failed mode registers nothing.
import { loadOrDegrade } from './guard.js';

export default await loadOrDegrade('mode', './mode.js', { id: 'ldh-review-unavailable', modeFactory: () => null });
