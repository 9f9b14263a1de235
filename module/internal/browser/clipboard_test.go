package browser

import (
	"context"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// cutHook is a JavaScript function of one websocket message the page
// sends. For an RFB ClientCutText (type 6) it pushes onto
// window.__warm.cut what the message carries: its Latin-1 text; or, in
// the Extended Clipboard form noVNC uses with TigerVNC, "notify" for a
// notify, and for a provide, its text inflated.
const cutHook = `(d) => {
	const w = window.__warm;
	const b = d instanceof ArrayBuffer ? new Uint8Array(d) : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : null;
	if (!b || b.length < 8 || b[0] !== 6) return;
	const v = new DataView(b.buffer, b.byteOffset, b.byteLength), len = v.getInt32(4);
	if (len >= 0) return w.cut.push(String.fromCharCode(...b.subarray(8, 8 + len)));
	const flags = b.length >= 12 ? v.getUint32(8) : 0;
	if (flags & 0x08000000) return w.cut.push('notify');
	if (!(flags & 0x10000000)) return;
	// noVNC flushes its zlib stream without ending it, so the inflater
	// ends in an error after giving all the data: read up to there.
	const z = b.slice(12, 8 - len); // copied now: noVNC reuses its buffer
	const r = new Blob([z]).stream().pipeThrough(new DecompressionStream('deflate')).getReader();
	const parts = [];
	const pump = () => r.read().then(({done, value}) => { if (value) parts.push(...value); if (!done) return pump(); }, () => {});
	pump().then(() => {
		const a = new Uint8Array(parts);
		const n = a.length >= 4 ? new DataView(a.buffer).getUint32(0) : 0;
		w.cut.push(a.length >= 4 + n ? new TextDecoder().decode(a.subarray(4, 4 + n)).replace(/\0$/, '') : 'undecodable provide: ' + a.length + ' bytes');
	});
}`

// pasteToDesktop does what a player does: opens the clipboard box, types
// text into it and clicks into the desktop's xterm (leaving the box tells
// the desktop there is text: an Extended Clipboard notify), then pastes
// there with Shift+Insert, so that the desktop asks for the text and the
// page sends it.
func (j *journey) pasteToDesktop(p *tab) {
	j.t.Helper()
	const text = "flag{pasted-from-the-page}"
	p.click("viewer-clipboard-toggle")
	p.waitJS("clipboard box open and focused", visible("viewer-clipboard-text")+
		` && document.activeElement === document.getElementById('viewer-clipboard-text')`, viewerState, 5*time.Second)
	ctx, cancel := context.WithTimeout(p.ctx, callTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		p.fail("type into the clipboard box: %v", err)
	}

	// The xterm is at the desktop's top left; a click there gives it the
	// keyboard (and leaves the box), then Shift+Insert pastes the
	// selection Xvnc holds for us.
	xy := eval[[]float64](p, `(() => {
		const c = document.querySelector('#viewer-screen canvas');
		c.scrollIntoView({block: 'center'});
		const r = c.getBoundingClientRect();
		return [r.left + r.width * 0.1, r.top + r.height * 0.15];
	})()`)
	p.do("click into the desktop's xterm", chromedp.MouseClickXY(xy[0], xy[1]))
	p.waitJS("the desktop told of the text", `window.__warm.cut.includes('notify')`, `JSON.stringify(window.__warm.cut)`, 5*time.Second)
	for _, k := range []input.DispatchKeyEventParams{
		{Type: input.DispatchKeyEventTypeRawKeyDown, Key: "Shift", Code: "ShiftLeft", WindowsVirtualKeyCode: 16, Modifiers: 8},
		{Type: input.DispatchKeyEventTypeRawKeyDown, Key: "Insert", Code: "Insert", WindowsVirtualKeyCode: 45, Modifiers: 8},
		{Type: input.DispatchKeyEventTypeKeyUp, Key: "Insert", Code: "Insert", WindowsVirtualKeyCode: 45, Modifiers: 8},
		{Type: input.DispatchKeyEventTypeKeyUp, Key: "Shift", Code: "ShiftLeft", WindowsVirtualKeyCode: 16},
	} {
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, k); err != nil {
			p.fail("press %s: %v", k.Key, err)
		}
	}
	p.waitJS("the desktop asked for the text and got it", `window.__warm.cut.includes('`+text+`')`, `JSON.stringify(window.__warm.cut)`, 10*time.Second)
	j.timing("clipboard: the page → the desktop's xterm: %s", eval[string](p, `JSON.stringify(window.__warm.cut)`))
	p.click("viewer-clipboard-toggle")
}
