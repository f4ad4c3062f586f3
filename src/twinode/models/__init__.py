from twinode.models.twin import PatientTwin

__all__ = ["PatientTwin"]
