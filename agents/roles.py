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
