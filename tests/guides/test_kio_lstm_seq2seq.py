"""keras-io's example "Character-level recurrent sequence-to-sequence model"
(examples/nlp/lstm_seq2seq.py, Keras 3 version, Apache 2.0) run on fastnn with only the
imports changed.

Changed besides the imports: fra-eng.zip is 64 made-up lines of its format ("English<TAB>French
<TAB>attribution", no network); latent_dim 32 instead of 256, batch 16, 2 epochs instead of 100;
the model is saved under pytest's tmp_path; 3 sentences decoded instead of 20. Added: the
inference encoder/decoder (built from the reloaded model's layers) fed the training targets step
by step give the training model's predictions.
"""

import numpy as np

import fastnn as keras

WORDS_EN = ["go", "run", "hi", "wow", "stop", "wait", "help", "jump"]
WORDS_FR = ["va", "cours", "salut", "ça alors", "arrête", "attends", "à l'aide", "saute"]


def fra_eng_lines(rng, count):
    """Lines shaped as fra.txt's: English, French and attribution separated by tabs."""
    lines = []
    for _ in range(count):
        k = rng.integers(0, len(WORDS_EN), rng.integers(1, 3))
        en = " ".join(WORDS_EN[j] for j in k).capitalize() + "."
        fr = " ".join(WORDS_FR[j] for j in k).capitalize() + " !"
        lines.append(f"{en}\t{fr}\tCC-BY 2.0 (France)")
    return "\n".join(lines) + "\n"


def test_character_level_seq2seq(tmp_path):
    keras.utils.set_random_seed(0)
    batch_size = 16  # Batch size for training.
    epochs = 2  # Number of epochs to train for.
    latent_dim = 32  # Latent dimensionality of the encoding space.
    num_samples = 64  # Number of samples to train on.
    data_path = tmp_path / "fra.txt"
    data_path.write_text(fra_eng_lines(np.random.default_rng(0), num_samples), encoding="utf-8")

    # Vectorize the data.
    input_texts = []
    target_texts = []
    input_characters = set()
    target_characters = set()
    with open(data_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for line in lines[: min(num_samples, len(lines) - 1)]:
        input_text, target_text, _ = line.split("\t")
        # "tab" is the "start sequence" character, "\n" the "end sequence" character.
        target_text = "\t" + target_text + "\n"
        input_texts.append(input_text)
        target_texts.append(target_text)
        for char in input_text:
            if char not in input_characters:
                input_characters.add(char)
        for char in target_text:
            if char not in target_characters:
                target_characters.add(char)

    input_characters = sorted(list(input_characters))
    target_characters = sorted(list(target_characters))
    num_encoder_tokens = len(input_characters)
    num_decoder_tokens = len(target_characters)
    max_encoder_seq_length = max([len(txt) for txt in input_texts])
    max_decoder_seq_length = max([len(txt) for txt in target_texts])

    input_token_index = dict([(char, i) for i, char in enumerate(input_characters)])
    target_token_index = dict([(char, i) for i, char in enumerate(target_characters)])

    encoder_input_data = np.zeros(
        (len(input_texts), max_encoder_seq_length, num_encoder_tokens), dtype="float32"
    )
    decoder_input_data = np.zeros(
        (len(input_texts), max_decoder_seq_length, num_decoder_tokens), dtype="float32"
    )
    decoder_target_data = np.zeros(
        (len(input_texts), max_decoder_seq_length, num_decoder_tokens), dtype="float32"
    )
    for i, (input_text, target_text) in enumerate(zip(input_texts, target_texts)):
        for t, char in enumerate(input_text):
            encoder_input_data[i, t, input_token_index[char]] = 1.0
        encoder_input_data[i, t + 1 :, input_token_index[" "]] = 1.0
        for t, char in enumerate(target_text):
            # decoder_target_data is ahead of decoder_input_data by one timestep
            decoder_input_data[i, t, target_token_index[char]] = 1.0
            if t > 0:
                decoder_target_data[i, t - 1, target_token_index[char]] = 1.0
        decoder_input_data[i, t + 1 :, target_token_index[" "]] = 1.0
        decoder_target_data[i, t:, target_token_index[" "]] = 1.0

    # Define an input sequence and process it.
    encoder_inputs = keras.Input(shape=(None, num_encoder_tokens))
    encoder = keras.layers.LSTM(latent_dim, return_state=True)
    encoder_outputs, state_h, state_c = encoder(encoder_inputs)
    # We discard `encoder_outputs` and only keep the states.
    encoder_states = [state_h, state_c]
    # Set up the decoder, using `encoder_states` as initial state.
    decoder_inputs = keras.Input(shape=(None, num_decoder_tokens))
    decoder_lstm = keras.layers.LSTM(latent_dim, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = keras.layers.Dense(num_decoder_tokens, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    model = keras.Model([encoder_inputs, decoder_inputs], decoder_outputs)

    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        [encoder_input_data, decoder_input_data],
        decoder_target_data,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=0.2,
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    assert "val_accuracy" in history.history
    # Save model
    model.save(tmp_path / "s2s_model.keras")
    probe = [encoder_input_data[:4], decoder_input_data[:4]]
    trained = model.predict(probe, verbose=0)
    assert trained.shape == (4, max_decoder_seq_length, num_decoder_tokens)

    # Define sampling models: restore the model and construct the encoder and decoder.
    model = keras.models.load_model(tmp_path / "s2s_model.keras")
    np.testing.assert_allclose(model.predict(probe, verbose=0), trained, rtol=1e-6)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer",
        "InputLayer",
        "LSTM",
        "LSTM",
        "Dense",
    ]

    encoder_inputs = model.input[0]  # input_1
    encoder_outputs, state_h_enc, state_c_enc = model.layers[2].output  # lstm_1
    encoder_states = [state_h_enc, state_c_enc]
    encoder_model = keras.Model(encoder_inputs, encoder_states)

    decoder_inputs = model.input[1]  # input_2
    decoder_state_input_h = keras.Input(shape=(latent_dim,))
    decoder_state_input_c = keras.Input(shape=(latent_dim,))
    decoder_states_inputs = [decoder_state_input_h, decoder_state_input_c]
    decoder_lstm = model.layers[3]
    decoder_outputs, state_h_dec, state_c_dec = decoder_lstm(
        decoder_inputs, initial_state=decoder_states_inputs
    )
    decoder_states = [state_h_dec, state_c_dec]
    decoder_dense = model.layers[4]
    decoder_outputs = decoder_dense(decoder_outputs)
    decoder_model = keras.Model(
        [decoder_inputs] + decoder_states_inputs, [decoder_outputs] + decoder_states
    )

    # The inference models share the trained layers: fed the training targets one step at a
    # time, they give the training model's predictions.
    states_value = encoder_model.predict(probe[0], verbose=0)
    assert [s.shape for s in states_value] == [(4, latent_dim), (4, latent_dim)]
    for t in range(max_decoder_seq_length):
        step, h, c = decoder_model.predict([probe[1][:, t : t + 1]] + states_value, verbose=0)
        np.testing.assert_allclose(step[:, 0], trained[:, t], rtol=1e-4, atol=1e-6)
        states_value = [h, c]

    # Reverse-lookup token index to decode sequences back to something readable.
    reverse_target_char_index = dict((i, char) for char, i in target_token_index.items())

    def decode_sequence(input_seq):
        # Encode the input as state vectors.
        states_value = encoder_model.predict(input_seq, verbose=0)
        # Generate empty target sequence of length 1, holding the start character.
        target_seq = np.zeros((1, 1, num_decoder_tokens))
        target_seq[0, 0, target_token_index["\t"]] = 1.0
        stop_condition = False
        decoded_sentence = ""
        while not stop_condition:
            output_tokens, h, c = decoder_model.predict([target_seq] + states_value, verbose=0)
            # Sample a token
            sampled_token_index = np.argmax(output_tokens[0, -1, :])
            sampled_char = reverse_target_char_index[sampled_token_index]
            decoded_sentence += sampled_char
            # Exit condition: either hit max length or find stop character.
            if sampled_char == "\n" or len(decoded_sentence) > max_decoder_seq_length:
                stop_condition = True
            # Update the target sequence (of length 1).
            target_seq = np.zeros((1, 1, num_decoder_tokens))
            target_seq[0, 0, sampled_token_index] = 1.0
            # Update states
            states_value = [h, c]
        return decoded_sentence

    for seq_index in range(3):
        input_seq = encoder_input_data[seq_index : seq_index + 1]
        decoded_sentence = decode_sequence(input_seq)
        print("-")
        print("Input sentence:", input_texts[seq_index])
        print("Decoded sentence:", decoded_sentence)
        assert 1 <= len(decoded_sentence) <= max_decoder_seq_length + 1
        assert set(decoded_sentence) <= set(target_characters)
