using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Tests.Training;

/// <summary>The data-size rules behind unset Epochs, BatchSize and ValidationFraction, checked against their
/// documentation.</summary>
[TestClass]
public sealed class TrainingPlannerTests
{
    [TestMethod]
    public void SmallDataTrainsInBatchesOf16AndLargerDataIn32()
    {
        Assert.AreEqual(16, TrainingPlanner.ChooseBatchSize(100));
        Assert.AreEqual(16, TrainingPlanner.ChooseBatchSize(999));
        Assert.AreEqual(32, TrainingPlanner.ChooseBatchSize(1_000));
        Assert.AreEqual(32, TrainingPlanner.ChooseBatchSize(67_349));
    }

    [TestMethod]
    public void EpochsAimAt300StepsBetween3And40AndStopAddingPast20000Steps()
    {
        Assert.AreEqual(16, TrainingPlanner.ChooseEpochs(19));    // 300 rows at batch 16: 16 × 19 = 304 steps
        Assert.AreEqual(19, TrainingPlanner.ChooseEpochs(16));    // 255 rows left after holding out 45: 304 steps
        Assert.AreEqual(40, TrainingPlanner.ChooseEpochs(5));     // 80 rows: 200 steps, capped at 40 epochs
        Assert.AreEqual(40, TrainingPlanner.ChooseEpochs(0));
        Assert.AreEqual(10, TrainingPlanner.ChooseEpochs(32));    // 1,000 rows at batch 32
        Assert.AreEqual(4, TrainingPlanner.ChooseEpochs(94));     // 3,000 rows: 376 steps
        Assert.AreEqual(3, TrainingPlanner.ChooseEpochs(157));    // 5,000 rows: the default 3 epochs
        Assert.AreEqual(2, TrainingPlanner.ChooseEpochs(10_000)); // 320,000 rows: 20,000 steps in 2 epochs
        Assert.AreEqual(1, TrainingPlanner.ChooseEpochs(50_000)); // always at least one epoch
    }

    [TestMethod]
    public void ValidationIsHeldOutOnlyWhenEpochsAreChosenAndNoSetIsGivenOrWhenAsked()
    {
        Assert.AreEqual(0.15,
            TrainingPlanner.ChooseValidationFraction(300, null, epochsSet: false, hasValidationSet: false));
        Assert.AreEqual(0.15, TrainingPlanner.ChooseValidationFraction(50, null, false, false));
        Assert.AreEqual(0.15, TrainingPlanner.ChooseValidationFraction(10_000, null, false, false));
        Assert.AreEqual(0, TrainingPlanner.ChooseValidationFraction(49, null, false, false));
        Assert.AreEqual(0, TrainingPlanner.ChooseValidationFraction(10_001, null, false, false));
        Assert.AreEqual(0,
            TrainingPlanner.ChooseValidationFraction(300, null, epochsSet: true, hasValidationSet: false));
        Assert.AreEqual(0, TrainingPlanner.ChooseValidationFraction(300, null, false, hasValidationSet: true));
        Assert.AreEqual(0, TrainingPlanner.ChooseValidationFraction(300, 0, false, false));
        Assert.AreEqual(0.3,
            TrainingPlanner.ChooseValidationFraction(100_000, 0.3, epochsSet: true, hasValidationSet: false));
    }

    [TestMethod]
    public void PatienceIsAQuarterOfTheEpochsAndAtLeastTwo()
    {
        Assert.AreEqual(5, TrainingPlanner.ChoosePatience(19));
        Assert.AreEqual(10, TrainingPlanner.ChoosePatience(40));
        Assert.AreEqual(2, TrainingPlanner.ChoosePatience(3));
    }

    [TestMethod]
    public void HoldOutIsStratifiedAndKeepsEveryClassInTraining()
    {
        // 60 rows of class 0, 30 of class 1, 2 of class 2, 1 of class 3.
        float[] labels = [.. Enumerable.Repeat(0f, 60), .. Enumerable.Repeat(1f, 30), 2f, 2f, 3f];
        var mask = TrainingPlanner.StratifiedHoldOut(labels, 0.15, classification: true, seed: 7);
        int Held(float c) => labels.Where((l, i) => l == c && mask[i]).Count();
        Assert.AreEqual(9, Held(0));   // 60 × 0.15
        Assert.AreEqual(5, Held(1));   // 30 × 0.15 = 4.5, rounded away from zero
        Assert.AreEqual(1, Held(2));   // at least one of a class with two rows, and one left to train on
        Assert.AreEqual(0, Held(3));   // a single row always trains
        CollectionAssert.AreEqual(mask, TrainingPlanner.StratifiedHoldOut(labels, 0.15, true, seed: 7));
        CollectionAssert.AreNotEqual(mask, TrainingPlanner.StratifiedHoldOut(labels, 0.15, true, seed: 8));
        Assert.IsFalse(TrainingPlanner.StratifiedHoldOut(labels, 0, true, 7).Any(m => m));
    }

    [TestMethod]
    public void RegressionHoldsOutAShareOfAllRows()
    {
        var labels = Enumerable.Range(0, 200).Select(i => (float)i).ToArray();
        var mask = TrainingPlanner.StratifiedHoldOut(labels, 0.15, classification: false, seed: 1);
        Assert.AreEqual(30, mask.Count(m => m));
    }

    [TestMethod]
    public void ThePlanReadsAsTheLogLine()
    {
        var plan = new TrainingPlan(300, 255, 45, 16, 16, 19, BatchSizeChosen: true, EpochsChosen: true, 5, false);
        Assert.AreEqual(304, plan.TotalSteps);
        StringAssert.StartsWith(plan.ToString(),
            "300 rows (45 held out for validation, stratified; early stopping after 5");
        StringAssert.Contains(plan.ToString(), "19 epochs × 16 steps of 16 = 304 optimizer steps");
        StringAssert.Contains(plan.ToString(), "epochs and batch size chosen from the data size");
        var given = new TrainingPlan(300, 300, 0, 8, 38, 2, false, false, 0, false);
        Assert.AreEqual("300 rows: 2 epochs × 38 steps of 8 = 76 optimizer steps (as set in the options).",
            given.ToString());
    }
}
