/* evalwatch dashboard: the sound cue for new incidents (muted by the header's checkbox). */
import { $, ev } from "./core.js";

const sound = $("sound-on");
sound.checked = localStorage.getItem("evalwatch_sound") !== "off";
sound.addEventListener("change", () => localStorage.setItem("evalwatch_sound", sound.checked ? "on" : "off"));
let audioCtx = null;
document.addEventListener("click", () => { if (audioCtx && audioCtx.state === "suspended") audioCtx.resume(); });
export function beep() {
  if (!sound.checked) return;
  ev.beeps += 1;
  try {
    audioCtx = audioCtx || new AudioContext();
    const o = audioCtx.createOscillator();
    const g = audioCtx.createGain();
    o.type = "sine";
    o.frequency.value = 880;
    g.gain.setValueAtTime(0.25, audioCtx.currentTime);
    g.gain.exponentialRampToValueAtTime(0.001, audioCtx.currentTime + 0.35);
    o.connect(g).connect(audioCtx.destination);
    o.start();
    o.stop(audioCtx.currentTime + 0.4);
  } catch (e) { /* no audio device: the visual cue remains */ }
}
