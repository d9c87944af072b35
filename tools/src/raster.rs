//! PNG copies of the SVG plots, for viewers and documents that do not take SVG.
//!
//! resvg draws the SVG as written; text needs a font, taken from the system's fonts. The plots
//! ask for `sans-serif`, which resvg maps to Arial unless told otherwise: it is mapped to the
//! first common sans-serif family installed, else to any installed family. On a machine with
//! no font at all the PNG has no text, and the caller is told so (the SVG keeps it).

use resvg::{tiny_skia, usvg};

/// Families preferred for `sans-serif`, in order.
const SANS_SERIF: [&str; 5] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
];

/// The PNG image of an SVG document.
pub struct Png {
    pub bytes: Vec<u8>,
    /// Whether a font was found, so that the text is drawn.
    pub has_text: bool,
}

/// Renders `svg` (as the plots write it) to PNG at its own size.
pub fn png(svg: &str) -> anyhow::Result<Png> {
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    let family = {
        let installed: Vec<&str> = fonts
            .faces()
            .flat_map(|f| f.families.iter().map(|(name, _)| name.as_str()))
            .collect();
        SANS_SERIF
            .into_iter()
            .find(|f| installed.contains(f))
            .or(installed.first().copied())
            .map(str::to_owned)
    };
    let has_text = family.is_some();
    if let Some(family) = family {
        fonts.set_sans_serif_family(family);
    }
    let tree = usvg::Tree::from_str(svg, &options)?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow::anyhow!("the plot has no area"))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    Ok(Png {
        bytes: pixmap.encode_png()?,
        has_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_becomes_a_png_of_its_size() {
        let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"20\">\
                   <rect width=\"40\" height=\"20\" fill=\"white\"/>\
                   <rect y=\"10\" width=\"40\" height=\"2\" fill=\"black\"/></svg>";
        let png = png(svg).unwrap();
        assert_eq!(&png.bytes[1..4], b"PNG");
        // Width and height, big-endian, in the IHDR chunk.
        assert_eq!(png.bytes[16..24], [0, 0, 0, 40, 0, 0, 0, 20]);
        let pixmap = tiny_skia::Pixmap::decode_png(&png.bytes).unwrap();
        assert_eq!(pixmap.pixel(5, 10).unwrap().red(), 0, "the bar is drawn");
        assert_eq!(
            pixmap.pixel(5, 2).unwrap().red(),
            255,
            "the background is white"
        );
    }
}
