"""The interview roles and difficulties a session can be opened with.

The first seven are the interview domains of the platform this product grew
from; software and ML/GenAI engineering were added for the question banks.
"""

ROLES: dict[str, str] = {
    "call_center_agent": "Call center agent",
    "consultancy": "Consultancy",
    "customer_service": "Customer service",
    "customer_service_manager": "Customer service manager",
    "customer_service_representative": "Customer service representative",
    "data_scientist": "Data scientist",
    "marketing_manager": "Marketing manager",
    "software_engineer": "Software engineer",
    "ml_genai_engineer": "ML / GenAI engineer",
}

DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")

# interview: the voice interviewer talks with the caller.
# transcribe: live transcript and pace feedback only, no agent (dictation, pipeline tests).
# assist: a call-center call on two tracks (agent, customer) with the agent-assist overlay.
MODES: tuple[str, ...] = ("interview", "transcribe", "assist")

# The intent label set each mode's utterances are classified with (none: not classified).
INTENT_LABEL_SETS: dict[str, str] = {"interview": "interview", "assist": "call_center"}
