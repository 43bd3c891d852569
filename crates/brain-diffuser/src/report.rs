//! Pictures for reports: grids of images (ground truth | stage 1 | final, one row per image).

use image::imageops::{FilterType, resize};
use image::{Rgb, RgbImage};

/// Lays out `rows` of images in a grid of `cell` x `cell` squares separated by `gutter` white
/// pixels. Images are resized to the cell with a bicubic (Catmull-Rom) filter; a row shorter than
/// the longest leaves its last cells white.
pub fn image_grid(rows: &[Vec<RgbImage>], cell: u32, gutter: u32) -> RgbImage {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let side = |count: u32| count * cell + count.saturating_sub(1) * gutter;
    let mut grid = RgbImage::from_pixel(side(columns), side(rows.len() as u32), Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let tile = if img.dimensions() == (cell, cell) {
                img.clone()
            } else {
                resize(img, cell, cell, FilterType::CatmullRom)
            };
            let (x, y) = (c as u32 * (cell + gutter), r as u32 * (cell + gutter));
            image::imageops::replace(&mut grid, &tile, i64::from(x), i64::from(y));
        }
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_land_in_their_cells_with_white_gutters() {
        let red = RgbImage::from_pixel(8, 8, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(16, 16, Rgb([0, 0, 255]));
        let grid = image_grid(&[vec![red.clone(), blue.clone()], vec![blue]], 8, 2);
        assert_eq!(grid.dimensions(), (18, 18));
        assert_eq!(grid.get_pixel(0, 0), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(7, 7), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(8, 3), &Rgb([255, 255, 255])); // gutter
        assert_eq!(grid.get_pixel(10, 0), &Rgb([0, 0, 255])); // resized 16 -> 8, still blue
        assert_eq!(grid.get_pixel(0, 10), &Rgb([0, 0, 255]));
        assert_eq!(grid.get_pixel(12, 12), &Rgb([255, 255, 255])); // missing cell stays white
    }
}
