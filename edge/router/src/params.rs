//! Path parameters captured by a template match, and template expansion.

use std::sync::Arc;

/// Values kept inline before spilling to the heap; templates rarely have more.
const INLINE: usize = 6;

/// Parameters captured from a `{name}` template, in template order.
///
/// Values borrow the request path and are the raw segment, still
/// percent-encoded: a value never contains `/`, so it can go back into a
/// path as is. Names are shared with the router, so a match allocates
/// nothing unless a template has more than six parameters.
#[derive(Clone, Default)]
pub struct Params<'p> {
    names: Option<Arc<[Box<str>]>>,
    values: Values<'p>,
}

#[derive(Clone)]
enum Values<'p> {
    Inline { len: u8, buf: [&'p str; INLINE] },
    Heap(Vec<&'p str>),
}

impl Default for Values<'_> {
    fn default() -> Self {
        Values::Inline {
            len: 0,
            buf: [""; INLINE],
        }
    }
}

impl<'p> Params<'p> {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of parameter `name`, if the template has it.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        let names = self.names.as_deref()?;
        let i = names.iter().position(|n| &**n == name)?;
        self.values().get(i).copied()
    }

    /// `(name, value)` pairs in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'p str)> + '_ {
        let names = self.names.as_deref().unwrap_or(&[]);
        names
            .iter()
            .map(|n| &**n)
            .zip(self.values().iter().copied())
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.values().len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn values(&self) -> &[&'p str] {
        match &self.values {
            Values::Inline { len, buf } => &buf[..usize::from(*len)],
            Values::Heap(v) => v,
        }
    }

    /// Appends a value; names are attached once the whole template matched.
    pub(crate) fn push(&mut self, value: &'p str) {
        match &mut self.values {
            Values::Inline { len, buf } if usize::from(*len) < INLINE => {
                buf[usize::from(*len)] = value;
                *len += 1;
            }
            Values::Inline { len, buf } => {
                let mut v = Vec::with_capacity(INLINE * 2);
                v.extend_from_slice(&buf[..usize::from(*len)]);
                v.push(value);
                self.values = Values::Heap(v);
            }
            Values::Heap(v) => v.push(value),
        }
    }

    pub(crate) fn set_names(&mut self, names: &Arc<[Box<str>]>) {
        self.names = Some(Arc::clone(names));
    }
}

impl std::fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Params<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Params<'_> {}

/// Builds parameters by hand, e.g. to expand a hub name outside a match.
impl<'n, 'p> FromIterator<(&'n str, &'p str)> for Params<'p> {
    fn from_iter<I: IntoIterator<Item = (&'n str, &'p str)>>(iter: I) -> Self {
        let mut params = Params::new();
        let mut names = Vec::new();
        for (name, value) in iter {
            names.push(Box::from(name));
            params.push(value);
        }
        if !names.is_empty() {
            params.names = Some(names.into());
        }
        params
    }
}

/// Fills the `{name}` placeholders of `template` (a path such as
/// `/v2/users/{id}` or a hub name such as `room-{room}`) from `params`.
///
/// Values are inserted as captured (still percent-encoded). A placeholder
/// whose name is not in `params`, or a `{` without a closing `}`, is kept
/// verbatim; validation guarantees neither happens with a configured route.
pub fn expand(template: &str, params: &Params) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        match params.get(&rest[open + 1..close]) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[open..=close]),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}
