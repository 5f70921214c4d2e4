//go:build ignore

// gen_icons writes the Teams app icons next to this file:
//
//	color.png    192x192, the Leap Change mark in white on the accent colour
//	outline.png  32x32, the same mark in white on a transparent background
//
// Run from the repository root after changing the mark or the colour:
//
//	go run infra/teams-app/gen_icons.go
//
// The PNGs are committed; scripts/teams-app.sh only packages them. Keep the background colour equal
// to the manifest's accentColor.
package main

import (
	"image"
	"image/color"
	"image/png"
	"log"
	"os"
	"path/filepath"
	"runtime"
)

// accent is the manifest's accentColor (#2B5FD9).
var accent = color.NRGBA{R: 0x2B, G: 0x5F, B: 0xD9, A: 0xFF}

type pt struct{ x, y float64 }

// The mark in a unit square (y grows downwards): a bold "L" with an arrow leaping up and to the right
// from its corner.
var mark = [][]pt{
	{{0.14, 0.10}, {0.34, 0.10}, {0.34, 0.70}, {0.86, 0.70}, {0.86, 0.90}, {0.14, 0.90}}, // L
	{{0.44, 0.52}, {0.70, 0.26}, {0.78, 0.34}, {0.52, 0.60}},                             // arrow shaft
	{{0.54, 0.10}, {0.90, 0.10}, {0.90, 0.46}},                                           // arrow head
}

func inPolygon(p pt, poly []pt) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a.y > p.y) != (b.y > p.y) && p.x < (b.x-a.x)*(p.y-a.y)/(b.y-a.y)+a.x {
			in = !in
		}
	}
	return in
}

// coverage is the fraction of the pixel (px, py) that the mark covers when the unit square is mapped
// onto [off, off+size) in both directions (8x8 samples per pixel).
func coverage(px, py int, off, size float64) float64 {
	const n = 8
	hit := 0
	for sy := 0; sy < n; sy++ {
		for sx := 0; sx < n; sx++ {
			p := pt{(float64(px) + (float64(sx)+0.5)/n - off) / size, (float64(py) + (float64(sy)+0.5)/n - off) / size}
			for _, poly := range mark {
				if inPolygon(p, poly) {
					hit++
					break
				}
			}
		}
	}
	return float64(hit) / (n * n)
}

func blend(a, b uint8, t float64) uint8 { return uint8(float64(a)*(1-t) + float64(b)*t + 0.5) }

// colorIcon: the accent colour everywhere, the mark in white inside the central 96x96 area.
func colorIcon() image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, 192, 192))
	for y := 0; y < 192; y++ {
		for x := 0; x < 192; x++ {
			c := coverage(x, y, 48, 96)
			img.SetNRGBA(x, y, color.NRGBA{blend(accent.R, 255, c), blend(accent.G, 255, c), blend(accent.B, 255, c), 255})
		}
	}
	return img
}

// outlineIcon: white only, the mark's coverage in the alpha channel, everything else transparent.
func outlineIcon() image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, 32, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 32; x++ {
			if a := uint8(coverage(x, y, 2, 28)*255 + 0.5); a > 0 {
				img.SetNRGBA(x, y, color.NRGBA{255, 255, 255, a})
			}
		}
	}
	return img
}

func write(path string, img image.Image) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s", path)
}

func main() {
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Dir(self)
	write(filepath.Join(dir, "color.png"), colorIcon())
	write(filepath.Join(dir, "outline.png"), outlineIcon())
}
