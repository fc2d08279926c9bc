"""The documents' own example requests (shared/seeds), declared once, as the values of the
nodes' inputs. The example workflows (tools/make_workflows.py) and the tests that check the
request bodies both read them; the local nodes take the same values, since they share the
input names. `base64` is left out: the transport chooses it."""

from __future__ import annotations

from types import MappingProxyType

# Segmind Realistic Vision v3 (seed 000): a night-sky selfie at Yosemite.
SELFIE = MappingProxyType({
    "prompt": "((selfie)) photo of an american girl and guy, smiling, (yosemite:1.3), mountains, wearing a backpack, "
              "red top, hiking jacket, rocks, river, wood, analog style (look at viewer:1.2) (skin texture), close up, "
              "cinematic light, ((night sky:1.2)), (milkiway:1.4), sidelighting, Fujiflim XT3, DSLR, 50mm, "
              "(long windblown hair)",
    "negative_prompt": "(deformed, distorted, disfigured:1.3), poorly drawn, bad anatomy, wrong anatomy, extra limb, "
                       "missing limb, floating limbs, (mutated hands and fingers:1.4), disconnected limbs, mutation, "
                       "mutated, ugly, disgusting, blurry, amputation, render, 3d, 2d, sketch, painting, digital art, "
                       "drawing, disfigured, ((nsfw)), ((breasts))",
    "scheduler": "dpmpp_2m", "num_inference_steps": 25, "guidance_scale": 6.0, "samples": 1, "seed": 4082622942,
    "img_width": 512, "img_height": 768,
})

# Segmind SDXL 1.0 with refiner (seed 001): a panda in a spacesuit.
PANDA = MappingProxyType({
    "prompt": "cinematic film still, 4k, realistic, ((cinematic photo:1.3)) of panda wearing a blue spacesuit, "
              "sitting in a bar, Fujifilm XT3, long shot, ((low light:1.4)), ((looking straight at the camera:1.3)), "
              "upper body shot, somber, shallow depth of field, vignette, highly detailed, high budget Hollywood movie, "
              "bokeh, cinemascope, moody, epic, gorgeous, film grain, grainy",
    "negative_prompt": "ugly, tiling, poorly drawn hands, poorly drawn feet, poorly drawn face, out of frame, extra "
                       "limbs, disfigured, deformed, body out of frame, blurry, bad anatomy, blurred, watermark, grainy, "
                       "signature, cut off, draft",
    "style": "base", "samples": 1, "scheduler": "UniPC", "num_inference_steps": 25, "guidance_scale": 8.0,
    "strength": 0.2, "high_noise_fraction": 0.8, "seed": 468685, "img_width": 1024, "img_height": 1024,
    "refiner": True,
})

# Segmind SD 1.5 img2img (seed 002): a fantasy landscape from the loaded picture.
LANDSCAPE = MappingProxyType({
    "samples": 1, "prompt": "A fantasy landscape, trending on artstation, mystical sky",
    "negative_prompt": "nude, disfigured, blurry", "scheduler": "DDIM", "num_inference_steps": 25,
    "guidance_scale": 10.5, "strength": 0.75, "seed": 98877465625, "img_width": 512, "img_height": 512,
})

# Segmind RealVisXL (seed 003): an analog-photo portrait.
PORTRAIT = MappingProxyType({
    "prompt": "analog photo, closeup portrait photo of 28 y.o asian man, natural skin, looks at viewer, city street, "
              "(cinematic shot, film grain:1.1)",
    "negative_prompt": "(worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch), open mouth",
    "samples": 1, "scheduler": "UniPC", "num_inference_steps": 25, "guidance_scale": 7.0, "seed": 3195698736,
    "img_width": 896, "img_height": 1152,
})

# SinkIn img2img (seed 004): the angry orc (the document leaves the model id and seed open).
ORC = MappingProxyType({
    "prompt": "an angry orc looking at camera smiling", "num_images": 1, "scale": 7.0, "steps": 30, "width": 512,
    "height": 768,
})
