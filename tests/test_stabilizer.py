from earshot.models.stabilizer import LocalAgreement


def test_commits_only_what_two_hypotheses_agree_on():
    agreement = LocalAgreement()
    assert agreement.update(["the", "cat"]) == ([], ["the", "cat"])
    assert agreement.update(["the", "cat", "sat"]) == (["the", "cat"], ["sat"])
    assert agreement.update(["the", "cat", "sat", "on"]) == (["the", "cat", "sat"], ["on"])


def test_committed_text_never_changes_when_the_model_changes_its_mind():
    agreement = LocalAgreement()
    agreement.update(["printing", "in", "the"])
    committed, _ = agreement.update(["printing", "in", "the", "only"])
    assert committed == ["printing", "in", "the"]
    # The model now rewrites an already committed word: the committed prefix stays.
    committed, tentative = agreement.update(["printed", "in", "the", "only", "sense"])
    assert committed == ["printing", "in", "the"]
    assert tentative == ["only", "sense"]
    committed, _ = agreement.update(["printed", "in", "the", "only", "sense", "with"])
    assert committed[:3] == ["printing", "in", "the"]


def test_agreement_ignores_case_and_punctuation():
    agreement = LocalAgreement()
    agreement.update(["In", "being", "modern,"])
    committed, tentative = agreement.update(["in", "being", "modern.", "Yes"])
    assert committed == ["in", "being", "modern."]
    assert tentative == ["Yes"]
