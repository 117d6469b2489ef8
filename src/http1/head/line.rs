//! One header line, byte by byte: nginx's `ngx_http_parse_header_line`
//! rules, shared by request and response heads.

use std::ops::Range;

/// What a byte does to a header line.
pub(super) enum Step {
    /// Part of the line.
    More,
    /// The line ended.
    Line,
    /// The empty line: the head ended.
    End,
    /// The head is invalid.
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum LineState {
    /// At the first byte of a line.
    #[default]
    Start,
    Name,
    SpaceBeforeValue,
    Value,
    SpaceAfterValue,
    /// A duplicated status line from a backend (`HTTP/1.1 ...` again).
    IgnoreLine,
    /// After the CR of a header line.
    AlmostDone,
    /// After the CR of the empty line.
    HeadAlmostDone,
}

/// One header line being scanned; positions are offsets into the head.
#[derive(Debug, Clone, Default)]
pub(super) struct HeaderLine {
    pub(super) state: LineState,
    pub(super) start: usize,
    pub(super) name_end: usize,
    pub(super) value: Range<usize>,
    /// A byte nginx does not take in a name (dropped or kept by
    /// `ignore_invalid_headers`).
    pub(super) invalid: bool,
}

/// Bytes nginx takes in header names: letters, digits and `-`.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl HeaderLine {
    /// Scans byte `b` at offset `p`. `underscores`: `_` is a name byte;
    /// `upstream`: a response (duplicated status lines are skipped).
    pub(super) fn step(&mut self, buf: &[u8], p: usize, underscores: bool, upstream: bool) -> Step {
        let b = buf[p];
        match self.state {
            LineState::Start => {
                self.start = p;
                self.invalid = false;
                match b {
                    b'\r' => self.state = LineState::HeadAlmostDone,
                    b'\n' => return Step::End,
                    _ if name_byte(b) => self.state = LineState::Name,
                    b'_' => {
                        self.invalid = !underscores;
                        self.state = LineState::Name;
                    }
                    _ if b <= 0x20 || b == 0x7f || b == b':' => return Step::Bad,
                    _ => {
                        self.invalid = true;
                        self.state = LineState::Name;
                    }
                }
            }
            LineState::Name => match b {
                _ if name_byte(b) => {}
                b'_' => self.invalid |= !underscores,
                b':' => {
                    self.name_end = p;
                    self.state = LineState::SpaceBeforeValue;
                }
                b'\r' | b'\n' => {
                    // A line without a colon: a header with an empty value.
                    self.name_end = p;
                    self.value = p..p;
                    return self.line_end(b);
                }
                b'/' if upstream && &buf[self.start..p] == b"HTTP" => {
                    self.state = LineState::IgnoreLine;
                }
                _ if b <= 0x20 || b == 0x7f => return Step::Bad,
                _ => self.invalid = true,
            },
            LineState::SpaceBeforeValue => match b {
                b' ' => {}
                b'\r' | b'\n' => {
                    self.value = p..p;
                    return self.line_end(b);
                }
                0 => return Step::Bad,
                _ => {
                    // The end is set where the value stops.
                    self.value.start = p;
                    self.state = LineState::Value;
                }
            },
            LineState::Value => match b {
                b' ' => {
                    self.value.end = p;
                    self.state = LineState::SpaceAfterValue;
                }
                b'\r' | b'\n' => {
                    self.value.end = p;
                    return self.line_end(b);
                }
                0 => return Step::Bad,
                _ => {}
            },
            LineState::SpaceAfterValue => match b {
                b' ' => {}
                b'\r' | b'\n' => return self.line_end(b),
                0 => return Step::Bad,
                _ => self.state = LineState::Value,
            },
            LineState::IgnoreLine => {
                if b == b'\n' {
                    self.state = LineState::Start;
                }
            }
            LineState::AlmostDone => match b {
                b'\n' => {
                    self.state = LineState::Start;
                    return Step::Line;
                }
                b'\r' => {}
                _ => return Step::Bad,
            },
            LineState::HeadAlmostDone => {
                return if b == b'\n' { Step::End } else { Step::Bad };
            }
        }
        Step::More
    }

    fn line_end(&mut self, b: u8) -> Step {
        if b == b'\r' {
            self.state = LineState::AlmostDone;
            Step::More
        } else {
            self.state = LineState::Start;
            Step::Line
        }
    }
}
