"""The voice-emotion head's training (models/voice/): ``edge-msa train voice``.

Embeddings come from the project's own run-time path: 16 kHz audio ->
``SpeechRecognizer.recognise(transcribe=False)`` (one Whisper tiny.en encoder
pass over the padded 30 s window) -> ``edge_msa.encoders.voice.embed``'s parts
(mean+std over the frames covering the audio, prosody, and the mean over those
plus K padding frames for each K in ``CONTEXT_GRID``). They are cached (config ``cache``)
so that the model selection reruns in seconds.

Model selection is leave-one-speaker-out (LOSO) on EmoDB's eight speakers;
RAVDESS (actor 01) is only ever extra training data. The grid covers the
inverse regularisation C of a class-balanced logistic regression, with and
without prosody, with and without RAVDESS, then the context mean's K (0: none);
with ``holdout_speakers`` the same selection first runs without those speakers
and the model it picks is scored on them; the chosen setting is then fitted
on everything and written as one ONNX graph (standardisation folded into the
weights, softmax on top) plus manifest.json.

Usage:
    nice -n 10 edge-msa train voice --config configs/voice.toml

config (TOML -> :class:`VoiceConfig`), features (embeddings through the
run-time path, cached), select (LOSO model selection and fit), export (the
ONNX graph), run (selection, held-out score, manifest).
"""
