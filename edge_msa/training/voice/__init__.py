"""The voice-emotion head's training (models/voice/): ``edge-msa train voice``.

Embeddings come from the project's own run-time path: 16 kHz audio -> with
``trunk_layers`` (the shipped config: 2) the trunk graph this training writes
beside the head (:mod:`.trunk`: Whisper tiny.en's first encoder blocks on the
window sized to the utterance), else ``SpeechRecognizer.recognise(transcribe=False)``
(the recogniser's whole encoder) -> ``edge_msa.encoders.voice.embed``'s
parts (mean+std over the frames covering the audio, prosody, and the mean over
those plus K padding frames for each K in ``CONTEXT_GRID``). They are cached
(config ``cache``) so that the model selection reruns in minutes.

Training rows: every RAVDESS speech clip (ravdess_speech/Actor_XX, 18 actors,
surprise dropped: the main set) and EmoDB (8 speakers, variety), plus four
augmented views of each training clip. Model selection is grouped
cross-validation (no person in both training and validation fold): each
corpus's people cut into ``folds`` blocks, fold i holding out block i of both;
the score is the mean of RAVDESS's per-actor and EmoDB's per-speaker UAR. The
grid covers the inverse regularisation C of a class-balanced logistic
regression, prosody on/off and the context mean's K (0 or 50). With
``holdout_speakers`` the same selection first runs without those people and
the model it picks is scored on them; the chosen setting is then fitted on
everyone and written as one ONNX graph (standardisation folded into the
weights, softmax on top) plus manifest.json.

Usage:
    nice -n 10 edge-msa train voice --config configs/voice.toml

config (TOML -> :class:`VoiceConfig`), trunk (the trunk graph), features
(embeddings through the run-time path, cached), select (grouped-CV model
selection and fit), export (the ONNX graph), run (selection, held-out score,
manifest).
"""
