"""FLOAT assembled: the four networks under the module names of the released checkpoint, and one
method per inference stage.

    image --encode_image--> identity latent, motion coefficients, feature pyramid
    motion coefficients --motion_latent--> reference motion (motion basis)
    waveform --audio_features--> (B, T, 512)        waveform --emotion--> (B, 7)
    (noisy chunk, audio, reference, emotion, context) --vector_field--> velocity of the motion latents
    identity latent + motion latents, feature pyramid --decode--> frames

Sampling (chunking, ODE solvers, noise) builds on `vector_field`; it lives in its own module.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from transformers import Wav2Vec2Model

from .audio import AudioEncoder, EmotionEncoder
from .config import FloatConfig
from .fmt import FlowMatchingTransformer, guided_vector_field
from .motion_autoencoder import EncodedImage, MotionAutoEncoder


class FloatModel(nn.Module):
    def __init__(self, config: FloatConfig):
        super().__init__()
        self.config = config
        self.motion_autoencoder = MotionAutoEncoder(config.motion_autoencoder)
        self.audio_encoder = AudioEncoder(config.wav2vec2, config.fmt.audio_dim)
        # Optional: 1.27 GB that only predicts emotion from speech; a chosen emotion does without it.
        # Registered even when None, so that `with_speech_networks` can put one in.
        self.register_module("emotion_encoder", EmotionEncoder(config.emotion) if config.emotion is not None else None)
        self.fmt = FlowMatchingTransformer(config.fmt)

    @property
    def device(self) -> torch.device:
        return self.fmt.pos_embed.device

    def cast(self, tensor: Tensor, network: nn.Module | None = None) -> Tensor:
        """An input moved to the device and floating dtype of `network` (default: the FMT's).

        Each stage runs where its network is, so the speech networks can wait on the CPU while the
        FMT and the decoder use the GPU (see `pipeline.GenerationSettings.offload`)."""
        reference = next(network.parameters()) if network is not None else self.fmt.pos_embed
        return tensor.to(device=reference.device, dtype=reference.dtype)

    def with_speech_networks(self, wav2vec2: Wav2Vec2Model | None = None, emotion_encoder: EmotionEncoder | None = None) -> FloatModel:
        """This model with the wav2vec2 network and/or the emotion classifier put in, as a new object sharing
        every network: the model itself is not changed, so one loaded model serves graphs that pair it with
        different speech networks."""
        if wav2vec2 is not None:
            stacked = wav2vec2.config.num_hidden_layers * wav2vec2.config.hidden_size
            expected = self.audio_encoder.audio_projection[0].in_features
            if stacked != expected:
                raise ValueError(
                    f"this audio encoder gives {wav2vec2.config.num_hidden_layers} layers x {wav2vec2.config.hidden_size} = "
                    f"{stacked} features per frame, but the FLOAT model's audio projection takes {expected}: use the "
                    f"wav2vec2 model this FLOAT checkpoint was trained with (wav2vec2-base-960h)"
                )
        if emotion_encoder is not None:
            classes = emotion_encoder.wav2vec2_for_emotion.classifier.out_proj.out_features
            if classes != self.config.fmt.emotion_dim:
                raise ValueError(f"this emotion model has {classes} classes, the FLOAT model expects {self.config.fmt.emotion_dim}")
        model = copy.copy(self)
        model._modules = dict(self._modules)
        if wav2vec2 is not None:
            audio_encoder = copy.copy(self.audio_encoder)
            audio_encoder._modules = dict(self.audio_encoder._modules)
            audio_encoder._modules["wav2vec2"] = wav2vec2
            model._modules["audio_encoder"] = audio_encoder
        if emotion_encoder is not None:
            model._modules["emotion_encoder"] = emotion_encoder
            model.config = self.config.with_emotion(emotion_encoder.wav2vec2_for_emotion.wav2vec2.config.to_dict())
        return model

    @torch.no_grad()
    def encode_image(self, image: Tensor) -> EncodedImage:
        """Portrait (B, 3, 512, 512) in [-1, 1] -> identity latent (B, 512), motion coefficients (B, 20),
        feature pyramid (7 maps, 8 px to 512 px)."""
        size = self.config.motion_autoencoder.image_size
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2:] != (size, size):
            raise ValueError(f"expected an image batch of shape (B, 3, {size}, {size}) in [-1, 1], got {tuple(image.shape)}")
        return self.motion_autoencoder.encode(self.cast(image, self.motion_autoencoder))

    def motion_basis(self) -> Tensor:
        """The orthonormal motion directions as columns (512, 20)."""
        return self.motion_autoencoder.dec.direction.basis()

    @torch.no_grad()
    def motion_latent(self, coefficients: Tensor) -> Tensor:
        """Motion coefficients (B, 20) -> motion latent (B, 512) in the span of the basis."""
        return self.motion_autoencoder.dec.direction(self.cast(coefficients, self.motion_autoencoder))

    @torch.no_grad()
    def audio_features(self, waveform: Tensor, num_frames: int) -> Tensor:
        """Normalised 16 kHz waveform (B, N) -> audio features (B, num_frames, 512) at 25 fps."""
        if waveform.dim() != 2 or waveform.shape[-1] == 0:
            raise ValueError(f"expected a mono waveform batch (B, N) with N > 0, got {tuple(waveform.shape)}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        return self.audio_encoder(self.cast(waveform, self.audio_encoder), num_frames, self.config.samples_per_frame)

    @torch.no_grad()
    def emotion(self, waveform: Tensor) -> Tensor:
        """Normalised 16 kHz waveform (B, N) -> emotion probabilities (B, 7), in `config.emotion_labels` order."""
        if self.emotion_encoder is None:
            raise RuntimeError(
                "this FLOAT model was loaded without the speech-emotion model, so it cannot predict emotion from "
                "speech: choose an emotion instead, or load the model with the "
                "'wav2vec-english-speech-emotion-recognition' folder beside it"
            )
        if waveform.dim() != 2 or waveform.shape[-1] < 400:
            raise ValueError(f"expected a mono waveform batch (B, N) of at least 400 samples (25 ms), got {tuple(waveform.shape)}")
        return self.emotion_encoder(self.cast(waveform, self.emotion_encoder))

    def vector_field(
        self,
        t: Tensor | float,
        x: Tensor,
        audio: Tensor,
        reference_motion: Tensor,
        emotion: Tensor,
        context_motion: Tensor,
        context_audio: Tensor,
        audio_scale: float = 2.0,
        emotion_scale: float = 1.0,
    ) -> Tensor:
        """Guided velocity of the motion latents (B, 60, 512) at flow time t, context positions included.

        x (B, 50, 512) noisy chunk; audio (B, 50, 512); reference_motion (B, 512); emotion (B, 7) or
        (B, 60, 7); context_motion and context_audio (B, 10, 512). Gradients flow (training uses it).
        """
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device)
        tensors = [self.cast(v) for v in (x, audio, reference_motion, emotion, context_motion, context_audio)]
        return guided_vector_field(self.fmt, t, *tensors, audio_scale=audio_scale, emotion_scale=emotion_scale)

    @torch.no_grad()
    def iter_decode(self, identity_latent: Tensor, features: list[Tensor], motion_latents: Tensor, batch_size: int = 1) -> Iterator[Tensor]:
        """Yields raw frames (unclamped, about [-1, 1]) in batches of up to `batch_size`, in the order of
        `decode`. The frames are independent given the source, so a batch is one decoder call. Batch size
        1 reproduces the official frames exactly and was the fastest on a 2-core CPU; larger batches pay
        off on GPUs and differ from it only by rounding."""
        if motion_latents.dim() != 3 or identity_latent.shape[0] != motion_latents.shape[0]:
            raise ValueError(
                f"expected motion latents (B, n, 512) for B identity latents, got {tuple(motion_latents.shape)} "
                f"for {tuple(identity_latent.shape)}"
            )
        batch, frames = motion_latents.shape[:2]
        # The decoded latent is identity + motion (FLOAT_SPEC §1.4): the sampled motion is absolute.
        decoder = self.motion_autoencoder
        latents = (self.cast(identity_latent, decoder)[:, None] + self.cast(motion_latents, decoder)).flatten(0, 1)
        features = [self.cast(f, decoder) for f in features]
        for start in range(0, batch * frames, batch_size):
            index = torch.arange(start, min(start + batch_size, batch * frames), device=latents.device)
            source = index // frames
            batch_features = features if batch == 1 else [f[source] for f in features]
            yield self.motion_autoencoder.decode(latents[index], batch_features)

    def decode(self, identity_latent: Tensor, features: list[Tensor], motion_latents: Tensor, batch_size: int = 1) -> Tensor:
        """identity latent (B, 512), feature pyramid, motion latents (B, n, 512) -> frames (B*n, 3, 512, 512),
        raw: frame b*n + i renders motion latent i of source b."""
        return torch.cat(list(self.iter_decode(identity_latent, features, motion_latents, batch_size)))
