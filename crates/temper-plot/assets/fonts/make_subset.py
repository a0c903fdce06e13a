"""Builds DejaVuSans-subset.ttf, the font temper-plot embeds (see README.md here).

    pip install fonttools==4.68.0
    python make_subset.py /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf DejaVuSans-subset.ttf

Two steps:
1. Subset DejaVu Sans to what charts print (ASCII, Latin-1, dashes, quotes, ellipsis, minus),
   without hinting: 760 KB down to about 22 KB.
2. Work around plotters 0.3.7's ab_glyph text drawing, which places each glyph's pixels from the
   left edge of the glyph's ink box instead of from its pen position, so the glyph's left side
   bearing is lost: "cl" prints as "d", "ies" as "i es". ttf-parser computes the ink box from the
   outline's points, so each glyph whose ink starts right of the pen gets one extra contour, a
   single point at x = 0 on its lowest line: it has no area, so nothing is drawn, but the box now
   starts at the pen and the pixels land where the font places them. (Composite glyphs take the
   box of their components.) Glyphs whose ink starts left of the pen (J, j, _ by a fraction of a
   pixel) stay as they are.
"""

import sys

from fontTools import subset
from fontTools.ttLib import TTFont

UNICODES = "U+0020-007E,U+00A0-00FF,U+2013-2014,U+2018-201D,U+2026,U+2212"


def main(source: str, target: str) -> None:
    options = subset.Options()
    options.layout_features = ["kern"]
    options.hinting = False
    options.desubroutinize = True
    font = subset.load_font(source, options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=subset.parse_unicodes(UNICODES))
    subsetter.subset(font)

    glyf, hmtx = font["glyf"], font["hmtx"]
    anchored = 0
    for name in font.getGlyphOrder():
        glyph = glyf[name]
        if glyph.isComposite() or glyph.numberOfContours <= 0:
            continue
        glyph.recalcBounds(glyf)
        if glyph.xMin <= 0:
            continue
        glyph.coordinates.append((0, glyph.yMin))
        glyph.flags.append(1)  # on-curve
        glyph.endPtsOfContours.append(len(glyph.coordinates) - 1)
        glyph.numberOfContours += 1
        glyph.recalcBounds(glyf)
        advance, _ = hmtx[name]
        hmtx[name] = (advance, glyph.xMin)
        anchored += 1
    font.recalcTimestamp = False  # the same bytes on every run
    font.save(target)
    print(f"{target}: {len(font.getGlyphOrder())} glyphs, {anchored} anchored at x = 0")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
