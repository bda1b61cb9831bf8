//! The clipboard: the internal one, and copies sent on to the system
//! clipboard by OSC 52 (terminals that support it), which the app writes to
//! the terminal after the next frame.

use base64::Engine as _;

#[derive(Debug, Default)]
pub struct Clipboard {
    text: String,
    /// OSC 52 sequences waiting to be written to the terminal.
    osc52_out: Vec<String>,
}

impl Clipboard {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Keep `text`, and queue it for the system clipboard.
    pub fn copy(&mut self, text: String) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        self.osc52_out.push(format!("\x1b]52;c;{encoded}\x07"));
        self.text = text;
    }

    /// The OSC 52 sequences queued since the last call.
    pub fn take_osc52(&mut self) -> Vec<String> {
        std::mem::take(&mut self.osc52_out)
    }
}
