"""Classifiers: the LSTM's hand-written backward through time, both classifiers' whole-model gradients,
the topic task, and that fine-tuning starts from the pretrained weights."""
import numpy as np
import pytest

from tinype import ModelConfig, Transformer
from tinype.classify import LSTMClassifier, TransformerClassifier, accuracy, fit, lstm_backward, lstm_forward
from tinype.gradcheck import check_layer, check_model
from tinype.tasks import TopicClassification


@pytest.mark.parametrize("masked", [False, True])
def test_lstm_backward_matches_central_differences(masked):
    rng = np.random.default_rng(0)
    B, T, E, H = 3, 5, 4, 6
    x = rng.normal(size=(B, T, E))
    wx, wh = rng.normal(0, 0.5, (E, 4 * H)), rng.normal(0, 0.5, (H, 4 * H))
    b = rng.normal(0, 0.1, 4 * H)
    mask = np.ones((B, T))
    if masked:
        mask[0, 3:] = 0                                   # a shorter first sequence
        mask[2, 1:] = 0
    errs = check_layer(lambda x, wx, wh, b: lstm_forward(x, wx, wh, b, mask), lstm_backward, [x, wx, wh, b])
    assert max(errs.values()) < 1e-7


def test_lstm_padding_carries_the_last_real_state():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 3))
    wx, wh, b = rng.normal(size=(3, 8)), rng.normal(size=(2, 8)), np.zeros(8)
    mask = np.array([[1, 1, 1, 0, 0, 0]])
    h_masked, _ = lstm_forward(x, wx, wh, b, mask)
    h_short, _ = lstm_forward(x[:, :3], wx, wh, b)
    np.testing.assert_allclose(h_masked, h_short, rtol=1e-14)


def test_lstm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 5))
    lstm = torch.nn.LSTM(5, 4, batch_first=True, dtype=torch.float64)
    wx = lstm.weight_ih_l0.detach().numpy().T            # torch's gate order is i, f, g, o too
    wh = lstm.weight_hh_l0.detach().numpy().T
    b = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    h, _ = lstm_forward(x, wx, wh, b)
    _, (h_t, _) = lstm(torch.from_numpy(x))
    np.testing.assert_allclose(h, h_t[0].detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("pe", [False, True])
def test_lstm_classifier_gradients(pe):
    model = LSTMClassifier(3, vocab_size=11, embed=4, hidden=5, dense=6, pe=pe, max_len=8, dtype="float64")
    rng = np.random.default_rng(3)
    # the classic stencil with a small step: the 4th-order one reaches 6e-4 and may cross a ReLU kink
    errs = check_model(model, rng.integers(0, 11, (4, 6)), rng.integers(0, 3, 4), h=1e-5, order=2)
    assert max(errs.values()) < 1e-6


@pytest.mark.parametrize("pe", ["alibi", "rope", "learned"])
def test_transformer_classifier_gradients(pe):
    cfg = ModelConfig(vocab_size=13, n_layer=1, d_model=8, n_head=2, T_train=6, pe=pe, dtype="float64")
    model = TransformerClassifier(cfg, 3, seed=0)
    rng = np.random.default_rng(4)
    errs = check_model(model, rng.integers(0, 13, (3, 6)), rng.integers(0, 3, 3), max_entries=12)
    assert max(errs.values()) < 1e-6


def test_from_pretrained_copies_the_trunk():
    cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, pe="alibi")
    lm = Transformer(cfg, seed=7)
    clf = TransformerClassifier.from_pretrained(lm, 4, seed=0)
    for k, v in lm.parameters().items():
        np.testing.assert_array_equal(clf.parameters()[k], v)
        assert clf.parameters()[k] is not v                     # a copy: fine-tuning leaves the LM alone
    assert clf.parameters()["cls.w"].shape == (16, 4)


def test_topic_task_is_balanced_and_split():
    task = TopicClassification()
    x, y = task.sample(np.random.default_rng(5), 10, 32)
    assert x.shape == (10, 32) and sorted(np.bincount(y)) == [2, 2, 2, 2, 2]
    tr = bytes(task.train[0][-40:])
    te = bytes(task.test[0][:40])
    assert tr + te in bytes(np.concatenate([task.train[0], task.test[0]]))   # contiguous, disjoint
    with pytest.raises(ValueError, match="do not fit"):
        task.sample(np.random.default_rng(0), 2, 10 ** 6, "test")
    with pytest.raises(ValueError, match="unknown"):
        TopicClassification(("compound", "nope-not-a-topic"))


def test_both_classifiers_fit_a_fixed_batch():
    task = TopicClassification()
    x, y = task.sample(np.random.default_rng(6), 20, 24)
    lstm = LSTMClassifier(task.n_classes, embed=16, hidden=16, dense=16)
    h = fit(lstm, lambda s: (x, y), 40, lr=1e-2)
    assert h[-1] < 0.5 * h[0] and accuracy(lstm, x, y) > 0.8
    tf = TransformerClassifier(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=24, pe="alibi"),
                               task.n_classes)
    h = fit(tf, lambda s: (x, y), 40, lr=1e-2)
    assert h[-1] < 0.5 * h[0] and accuracy(tf, x, y) > 0.8
