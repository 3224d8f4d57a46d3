"""The gallery of an apply run: one static HTML page (no server: it opens from the file system and inside the
Snakemake report) with a thumbnail per hip and target, sortable and filterable by target, probability, label
and the models' disagreement, each thumbnail a link to its full-size picture (docs/apply.md).

A picture shows the hip crop (grey, its normalised intensities clipped to 0-1 as the report's figures do),
then each model's Grad-CAM map (the mean over its seeds, `jet`, over the crop) with the target's landmark
group (white dots) on every panel. Pictures are written one batch of hips at a time (memory flat in the
cohort's size) with Pillow, named by study row and target so that no user string reaches a file name; every
user string in the page (ids, model names, the title) goes through html.escape.
"""

import html
import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from osteoloc.io.atomic import write_text
from osteoloc.io.maps_h5 import MapsFile
from osteoloc.io.study_h5 import StudyFile
from osteoloc.names import SHORT_NAMES, TARGETS

THUMBS, FULL = "thumbs", "full"
GAP = 2  # px between panels
JET = colormaps["jet"]


def hip_batches(study_path, batch_size):
    """Yield (rows, images (b, S, S) float32, groups (b, 4, L, 2) crop px, valid (b, 4, L)) over every hip of
    a study HDF5: the one place the gallery reads it."""
    with StudyFile(study_path) as study:
        for batch in study.batches(("image", "groups", "valid"), np.arange(len(study)), batch_size):
            yield batch.rows, batch.image.astype(np.float32), batch.groups, batch.valid


def panel(image, heatmap, alpha):
    """RGB uint8 (S, S, 3): the crop, with `heatmap` (S, S, values 0-1) blended over it when given."""
    grey = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=-1)
    if heatmap is not None:
        grey = (1 - alpha) * grey + alpha * JET(np.clip(heatmap, 0, 1))[..., :3]
    return (grey * 255 + 0.5).astype(np.uint8)


def picture(image, maps, points, scale, alpha, titles=None):
    """A PIL image: panels [crop, map of each model] side by side at `scale` x the crop, landmark `points`
    ((k, 2) crop px, x y) as dots; `titles` (one per panel) written above them on full-size pictures."""
    panels = [panel(image, None, alpha)] + [panel(image, m, alpha) for m in maps]
    size = image.shape[-1] * scale
    header = 14 if titles else 0
    canvas = Image.new("RGB", (len(panels) * size + (len(panels) - 1) * GAP, size + header), "white")
    draw = ImageDraw.Draw(canvas)
    radius = max(1.0, scale * 0.8)
    for k, rgb in enumerate(panels):
        left = k * (size + GAP)
        tile = Image.fromarray(rgb)
        canvas.paste(tile.resize((size, size), Image.Resampling.NEAREST) if scale > 1 else tile, (left, header))
        for x, y in points:
            cx, cy = left + (x + 0.5) * scale, header + (y + 0.5) * scale
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill="white", outline="black")
        if titles:
            draw.text((left + 2, 1), titles[k], fill="black")
    return canvas


def write_pictures(study_path, maps_paths, out_dir, *, batch_size, full_scale, alpha):
    """Thumbnail and full-size picture of every hip and target under out_dir/thumbs and out_dir/full
    (`<row>_<target>.png`). maps_paths: {model: [maps.h5 of each seed]}, every file over the study's rows in
    order. Returns the number of pictures pairs written."""
    out_dir = Path(out_dir)
    for folder in (THUMBS, FULL):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    models = list(maps_paths)
    titles = ["crop", *models]
    written = 0
    with ExitStack() as stack:
        files = {m: [stack.enter_context(MapsFile(p)) for p in paths] for m, paths in maps_paths.items()}
        for rows, images, groups, valid in hip_batches(study_path, batch_size):
            for maps_file in (f for fs in files.values() for f in fs):
                if not np.array_equal(maps_file.rows[rows[0]:rows[-1] + 1], rows):
                    raise ValueError(f"{maps_file.path}: its rows are not the study's {study_path} rows in order")
            positions = np.arange(rows[0], rows[-1] + 1)
            mean_maps = {m: np.mean([f.take(positions) for f in fs], axis=0) for m, fs in files.items()}
            for i, row in enumerate(rows):
                for t, target in enumerate(TARGETS):
                    points = groups[i, t][valid[i, t] & np.isfinite(groups[i, t]).all(axis=-1)]
                    maps = [mean_maps[m][i, t] for m in models]
                    name = f"{int(row)}_{target}.png"
                    picture(images[i], maps, points, 1, alpha).save(out_dir / THUMBS / name)
                    picture(images[i], maps, points, full_scale, alpha, titles).save(out_dir / FULL / name)
                    written += 1
    return written


def _fmt(value):
    return "" if value is None or not np.isfinite(value) else f"{value:.3f}"


def entry_html(hip, models):
    """One gallery entry (a <figure>) for `hip`: dict row, subject, visit, side, target, label, disagreement,
    probs {model: (mean, sd)}. The data-* attributes feed the page's sorting and filtering."""
    e = html.escape
    probs = {m: hip["probs"][m][0] for m in models}
    mean = float(np.nanmean(list(probs.values()))) if probs else np.nan
    name = f"{int(hip['row'])}_{hip['target']}.png"
    who = f"{hip['subject']} {hip['visit']} {hip['side']}".strip()
    label = {1: "1", 0: "0"}.get(int(hip["label"]), "unknown")
    lines = " · ".join(f"{e(m)} {_fmt(hip['probs'][m][0])}"
                       + (f" ± {_fmt(hip['probs'][m][1])}" if np.isfinite(hip["probs"][m][1]) else "")
                       for m in models)
    data = {"target": hip["target"], "label": label, "prob": _fmt(mean) or "-1",
            "disagreement": _fmt(hip["disagreement"]) or "0", "subject": who, "row": str(int(hip["row"])),
            "probs": json.dumps({m: (None if not np.isfinite(p) else round(float(p), 6)) for m, p in probs.items()})}
    attributes = " ".join(f'data-{key}="{e(value, quote=True)}"' for key, value in data.items())
    return (f'<figure class="entry" {attributes}>'
            f'<a href="{FULL}/{e(name)}" target="_blank"><img src="{THUMBS}/{e(name)}" loading="lazy" '
            f'alt="{e(who, quote=True)} {e(SHORT_NAMES.get(hip["target"], hip["target"]))}"></a>'
            f'<figcaption><b>{e(who)}</b> · {e(SHORT_NAMES.get(hip["target"], hip["target"]))}<br>{lines}<br>'
            f'label {e(label)} · disagreement {_fmt(hip["disagreement"])}</figcaption></figure>')


def hips_of(ensemble):
    """The entries' dicts from an ensemble table (`apply.ensemble`), in its row and target order."""
    hips = []
    for (row, target), part in ensemble.groupby(["row", "target"], sort=False):
        first = part.iloc[0]
        hips.append({"row": int(row), "target": target, "subject": str(first["subject"]),
                     "visit": str(first["visit"]), "side": str(first["side"]), "label": int(first["label"]),
                     "disagreement": float(first["disagreement"]),
                     "probs": {m: (float(mean), float(sd)) for m, mean, sd in
                               zip(part["model"], part["mean"], part["sd"])}})
    return hips


STYLE = """
body{font-family:sans-serif;margin:1em;background:#fafafa}
header{position:sticky;top:0;background:#fafafa;padding-bottom:.5em;border-bottom:1px solid #ccc}
#controls label{margin-right:1em;white-space:nowrap}
#gallery{display:flex;flex-wrap:wrap;gap:8px;margin-top:.5em}
.entry{margin:0;padding:4px;background:white;border:1px solid #ddd;font-size:11px;max-width:340px}
.entry img{display:block;height:100px;width:auto;image-rendering:pixelated}
.entry[hidden]{display:none}
"""

SCRIPT = """
(function(){
  const gallery=document.getElementById('gallery');
  const entries=Array.from(gallery.querySelectorAll('.entry'));
  const q=id=>document.getElementById(id);
  function prob(e,model){
    if(model==='mean') return parseFloat(e.dataset.prob);
    const p=JSON.parse(e.dataset.probs)[model]; return p===null||p===undefined?-1:p;}
  function update(){
    const target=q('target').value,label=q('label').value,model=q('model').value,
          lo=parseFloat(q('pmin').value),hi=parseFloat(q('pmax').value),dmin=parseFloat(q('dmin').value),
          key=q('sort').value,desc=q('order').value==='desc';
    const value=e=>key==='prob'?prob(e,model):key==='disagreement'?parseFloat(e.dataset.disagreement):
          key==='label'?e.dataset.label:key==='row'?parseInt(e.dataset.row):e.dataset[key];
    entries.sort((a,b)=>{const x=value(a),y=value(b);const c=x<y?-1:x>y?1:0;return desc?-c:c;});
    let shown=0;
    for(const e of entries){
      const p=prob(e,model);
      const ok=(target==='all'||e.dataset.target===target)&&(label==='all'||e.dataset.label===label)
        &&p>=lo&&p<=hi&&parseFloat(e.dataset.disagreement)>=dmin;
      e.hidden=!ok; if(ok) shown++; gallery.appendChild(e);}
    q('count').textContent=shown+' of '+entries.length+' entries shown';}
  // a link may carry the controls' values, e.g. index.html?target=osteo_fem_sup&label=1&sort=disagreement
  new URLSearchParams(location.search).forEach((v,k)=>{const c=q(k); if(c&&c.closest('#controls')) c.value=v;});
  document.querySelectorAll('#controls select, #controls input').forEach(c=>c.addEventListener('input',update));
  update();
})();
"""


def _options(values, labels=None):
    labels = labels or values
    return "".join(f'<option value="{html.escape(v, quote=True)}">{html.escape(t)}</option>'
                   for v, t in zip(values, labels))


def gallery_html(hips, models, title, note=""):
    """The page: controls, one entry per hip and target, the sorting and filtering script (inline)."""
    e = html.escape
    targets = list(dict.fromkeys(h["target"] for h in hips))
    controls = (
        f'<label>target <select id="target">{_options(["all", *targets], ["all", *[SHORT_NAMES.get(t, t) for t in targets]])}'
        f'</select></label>'
        f'<label>label <select id="label">{_options(["all", "1", "0", "unknown"])}</select></label>'
        f'<label>probability of <select id="model">{_options(["mean", *models], ["mean of models", *models])}'
        f'</select></label>'
        '<label>from <input id="pmin" type="number" min="0" max="1" step="0.05" value="0"></label>'
        '<label>to <input id="pmax" type="number" min="0" max="1" step="0.05" value="1"></label>'
        '<label>disagreement at least <input id="dmin" type="number" min="0" max="1" step="0.05" value="0"></label>'
        f'<label>sort by <select id="sort">{_options(["prob", "disagreement", "label", "subject", "target", "row"], ["probability", "disagreement", "label", "subject", "target", "study row"])}'
        f'</select></label>'
        f'<label><select id="order">{_options(["desc", "asc"], ["descending", "ascending"])}</select></label>')
    body = "\n".join(entry_html(h, models) for h in hips)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f'<style>{STYLE}</style></head><body>\n<header><h1>{e(title)}</h1><p>{e(note)}</p>'
            f'<form id="controls" onsubmit="return false">{controls}</form><p id="count"></p></header>\n'
            f'<main id="gallery">\n{body}\n</main>\n<script>{SCRIPT}</script></body></html>\n')


def write_gallery(hips, models, out_dir, title, note=""):
    """Write out_dir/index.html; returns its path."""
    path = Path(out_dir) / "index.html"
    write_text(gallery_html(hips, models, title, note), path)
    return path
